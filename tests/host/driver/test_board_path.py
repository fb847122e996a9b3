"""The board path: `run --bundle` needs neither torch nor onnxruntime, runs the bundle's model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from edgemoe.host.app.cli import main
from tests.conftest import assert_one_line_error

MINI = "m3vit-mini"

#: Makes the float stack unimportable in a child interpreter and records each attempt.
BLOCKER = textwrap.dedent(
    """
    import os, sys

    BLOCKED = ("torch", "onnxruntime", "onnx", "onnxscript", "safetensors")
    BLOCKED += tuple(os.environ.get("EDGEMOE_BLOCK_MORE", "").split())

    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                with open(os.environ["EDGEMOE_BLOCK_LOG"], "a") as f:
                    f.write(name + "\\n")
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, _Block())
    """
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("board")
    path = d / "mini.bin"
    assert main(["export", "--config", MINI, "--seed", "3", "--random", "--out", str(path)]) == 0
    return path


def blocked_run(
    tmp_path, *argv: str, more: str = ""
) -> tuple[subprocess.CompletedProcess, list[str]]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    log = tmp_path / "imports.log"
    log.write_text("")
    env = dict(
        os.environ, PYTHONPATH=str(site), EDGEMOE_BLOCK_LOG=str(log), EDGEMOE_BLOCK_MORE=more
    )
    proc = subprocess.run(
        [sys.executable, "-m", "edgemoe.host.app.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return proc, log.read_text().split()


@pytest.mark.parametrize("backend", ["csim", "golden"])
def test_run_bundle_imports_neither_torch_nor_onnxruntime(tmp_path, bundle, backend):
    out = tmp_path / "out"
    proc, attempts = blocked_run(
        tmp_path, "run", "--bundle", str(bundle), "--backend", backend, "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert attempts == [], attempts  # not even tried
    report = json.loads((out / "report.json").read_text())
    assert report["config"] == MINI and report["profile"] == "lean"  # from the bundle
    assert report["weights"] == "random init, seed 3 (untrained)" and report["seed"] == 3
    assert (out / "sample_semseg.png").exists()


def test_without_matplotlib_figures_are_skipped_with_a_notice(tmp_path, bundle):
    out = tmp_path / "out"
    proc, attempts = blocked_run(
        tmp_path, "run", "--bundle", str(bundle), "--out", str(out), more="matplotlib"
    )
    assert proc.returncode == 0, proc.stderr
    assert "matplotlib is not installed" in proc.stderr
    assert (out / "sample_depth.png").exists() and not list(out.glob("*_figure.png"))


def test_without_torch_the_float_model_is_a_one_line_error(tmp_path, bundle):
    for argv in (
        ["run", "--config", MINI, "--out", str(tmp_path / "a")],
        ["run", "--bundle", str(bundle), "--check", "--out", str(tmp_path / "b")],
    ):
        proc, _ = blocked_run(tmp_path, *argv)
        assert_one_line_error(proc.returncode, proc.stderr, "PyTorch is not installed", "--bundle")


def test_bundle_gives_the_same_outputs_on_every_backend(tmp_path, capsys, bundle):
    """The bundle's datapath weights and heads on golden, csim and (its float model) torch;
    the same as a run from the seed without a bundle."""
    maps = {}
    runs = {
        "csim": ["--bundle", str(bundle)],
        "golden": ["--bundle", str(bundle)],
        "torch": ["--bundle", str(bundle)],
        "csim-seed": ["--config", MINI, "--seed", "3", "--random"],
    }
    for name, argv in runs.items():
        out = tmp_path / name
        backend = name.split("-")[0]
        code = main(["run", *argv, "--backend", backend, "--no-figures", "--out", str(out)])
        _, err = capsys.readouterr()
        assert code == 0, err
        maps[name] = {
            t: np.asarray(Image.open(out / f"sample_{t}.png")) for t in ("semseg", "depth")
        }
        assert not list(out.glob("*_figure.png"))
    for t in ("semseg", "depth"):
        assert (maps["csim"][t] == maps["golden"][t]).all()
        assert (maps["csim"][t] == maps["csim-seed"][t]).all()
    assert (maps["torch"]["semseg"] == maps["csim"]["semseg"]).mean() > 0.95


def test_a_bundle_of_another_tiling_runs(tmp_path, capsys):
    """`export --tiling 16x8 --p 4` writes a bundle `run` can use: it builds that C-sim."""
    path = tmp_path / "t.bin"
    assert (
        main(["export", "--config", MINI, "--tiling", "16x8", "--p", "4", "--out", str(path)]) == 0
    )
    out = tmp_path / "out"
    code = main(
        ["run", "--bundle", str(path), "--no-figures", "--task", "depth", "--out", str(out)]
    )
    _, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["tiling"] == "16x8-p4-axi128"
    code = main(["run", "--bundle", str(path), "--backend", "csim-direct", "--out", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, "csim-direct", "16x8-p4")


def test_export_records_the_checkpoint_digest(tmp_path, capsys):
    import torch

    from edgemoe.host.export.deployment import checkpoint_digest, read_deployment
    from edgemoe.models.m3vit import random_model
    from tests.conftest import cfg

    ck = tmp_path / "m.pt"
    torch.save(random_model(cfg(MINI), 7).state_dict(), ck)
    path = tmp_path / "b.bin"
    assert main(["export", "--config", MINI, "--checkpoint", str(ck), "--out", str(path)]) == 0
    dep = read_deployment(path.read_bytes())
    assert dep.source.checkpoint == str(ck)
    assert dep.source.checkpoint_sha256 == checkpoint_digest(ck)
    capsys.readouterr()
    # the recorded checkpoint is found for --check; moved away, it must be named
    out = tmp_path / "out"
    code = main(["run", "--bundle", str(path), "--check", "--no-figures", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    ck.rename(tmp_path / "moved.pt")
    code = main(["run", "--bundle", str(path), "--check", "--out", str(tmp_path / "o2")])
    assert_one_line_error(code, capsys.readouterr().err, "m.pt", "pass --checkpoint")
    code = main(
        ["run", "--bundle", str(path), "--check", "--checkpoint", str(tmp_path / "moved.pt"),
         "--no-figures", "--out", str(tmp_path / "o3")]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
