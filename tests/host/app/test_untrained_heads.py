"""A checkpoint without task heads: ``run``, ``eval``, ``export`` and the API refuse or
label its tasks; a bundle exported from it carries the fact to the torch-free path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import edgemoe
from edgemoe.errors import UntrainedHeadError
from edgemoe.host.app.cli import main
from edgemoe.host.export.bundle import read_bundle
from edgemoe.host.export.deployment import read_deployment
from edgemoe.models.m3vit import random_model
from tests.conftest import assert_one_line_error, cfg

MINI = "m3vit-mini"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """M3ViT-layout records of the mini (``module.backbone.*``): ``none`` without any task
    head, ``depth`` without depth's; and a bundle exported from ``none``."""
    d = tmp_path_factory.mktemp("untrained")
    sd = random_model(cfg(MINI), 1).state_dict()
    out = {}
    for name, drop in (("none", ("heads.",)), ("depth", ("heads.depth.",))):
        kept = {f"module.backbone.{k}": v for k, v in sd.items() if not k.startswith(drop)}
        out[name] = d / f"no-heads-{name}.pth"
        torch.save({"state_dict": kept, "epoch": 3}, out[name])
    out["bundle"] = d / "no-heads.bin"
    argv = ["export", "--config", MINI, "--checkpoint", str(out["none"])]
    assert main([*argv, "--out", str(out["bundle"])]) == 0
    return out


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_refuses_untrained_heads_and_loses_nothing(tmp_path, capsys, ckpts) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = cli(
        capsys, "run", "--config", MINI, "--checkpoint", str(ckpts["none"]), "--backend",
        "golden", "--no-figures", "--out", str(out), "--force",
    )  # fmt: skip
    assert_one_line_error(
        code, err, f"checkpoint {ckpts['none']}", "task(s) semseg, depth", "--untrained-heads"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # only the tasks run count: semseg's head is in the checkpoint
    code, _, err = cli(
        capsys, "run", "--config", MINI, "--checkpoint", str(ckpts["depth"]), "--task",
        "depth", "--backend", "golden", "--no-figures", "--out", str(tmp_path / "o2"),
    )  # fmt: skip
    assert_one_line_error(code, err, "task(s) depth;")
    code, _, err = cli(
        capsys, "run", "--config", MINI, "--checkpoint", str(ckpts["depth"]), "--task",
        "semseg", "--backend", "golden", "--no-figures", "--out", str(tmp_path / "o3"),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "o3" / "report.json").read_text())
    assert report["heads"] == {"semseg": "trained"}
    assert "untrained head" in report["weights"]  # the weights lack depth's head


def test_run_with_the_flag_says_untrained_head(tmp_path, capsys, ckpts, monkeypatch) -> None:
    import edgemoe.host.app.run as run_mod

    titles: list[str] = []

    def spy(path, image, spec, output, title, subtitle="", unit=None):
        titles.append(f"{title}\n{subtitle}")  # drawn by task_figure; not drawn here

    monkeypatch.setattr(run_mod, "task_figure", spy)
    out = tmp_path / "out"
    code, stdout, err = cli(
        capsys, "run", "--config", MINI, "--checkpoint", str(ckpts["depth"]), "--backend",
        "golden", "--untrained-heads", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["heads"] == {"semseg": "trained", "depth": "untrained head"}
    assert report["weights"].endswith("; untrained head: depth")
    tasks = report["images"][0]["tasks"]
    assert tasks["depth"]["head"] == "untrained head" and tasks["semseg"]["head"] == "trained"
    assert tasks["depth"]["title"].endswith("/ depth (untrained head)")
    assert "untrained" not in tasks["semseg"]["title"]
    assert len(titles) == 2 and all("untrained head: depth" in t for t in titles)
    assert "depth (untrained head)" in titles[1]
    assert "untrained head" in stdout
    # --random says random init, needs no flag
    code, _, err = cli(
        capsys, "run", "--config", MINI, "--random", "--backend", "golden", "--no-figures",
        "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["heads"] == {"semseg": "random init", "depth": "random init"}


def test_eval_refuses_then_labels(tmp_path, capsys, ckpts) -> None:
    js = tmp_path / "eval.json"
    argv = ["eval", "--config", MINI, "--checkpoint", str(ckpts["none"]), "--backends", "torch"]
    argv += ["--images", "1", "--batch", "1", "--quiet", "--json", str(js)]
    code, _, err = cli(capsys, *argv)
    assert_one_line_error(code, err, "task(s) semseg, depth", "--untrained-heads")
    assert not js.exists()
    code, stdout, err = cli(capsys, *argv, "--untrained-heads")
    assert code == 0, err
    result = json.loads(js.read_text())
    assert result["heads"] == {"semseg": "untrained head", "depth": "untrained head"}
    assert {r["head"] for r in result["rows"]} == {"untrained head"}
    assert "untrained head: semseg, depth" in result["weights"]
    assert "untrained head: semseg, depth" in stdout.splitlines()[0]


def test_api_refuses_without_the_keyword(ckpts) -> None:
    m = edgemoe.load(MINI, checkpoint=ckpts["depth"])
    image = m.sample_image()
    with pytest.raises(UntrainedHeadError, match=r"task\(s\) depth; pass untrained_heads=True"):
        m.run(image, backend="golden")
    assert m.run(image, tasks="semseg", backend="golden")["semseg"].head == "trained"
    m = edgemoe.load(MINI, checkpoint=ckpts["depth"], untrained_heads=True)
    r = m.run(image, backend="golden")
    assert r["depth"].head == "untrained head" and r["semseg"].head == "trained"
    assert "untrained head: depth" in r.weights and "untrained head" in repr(r["depth"])
    r = edgemoe.load(MINI, random=True).run(image, tasks="depth", backend="golden")
    assert r["depth"].head == "random init"


def test_bundle_carries_untrained_heads_to_the_torch_free_path(tmp_path, ckpts) -> None:
    from tests.api.torchless import run_python, torchless_env

    dep = read_deployment(read_bundle(ckpts["bundle"]))
    assert dep.source.untrained_heads == ("semseg", "depth")
    assert dep.meta["weights"]["untrained_heads"] == ["semseg", "depth"]
    env = torchless_env(tmp_path)
    edgemoe_cli = str(Path(sys.executable).with_name("edgemoe"))
    argv = [edgemoe_cli, "run", "--bundle", str(ckpts["bundle"]), "--backend", "golden"]
    argv += ["--task", "depth", "--no-figures", "--out", str(tmp_path / "o")]
    run = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert_one_line_error(run.returncode, run.stderr, f"bundle {ckpts['bundle']}", "task(s) depth;")
    code = (
        "import sys, edgemoe\n"
        f"m = edgemoe.load(bundle={str(ckpts['bundle'])!r})\n"
        "try:\n"
        "    m.run(m.sample_image(), tasks='semseg', backend='golden')\n"
        "except edgemoe.errors.UntrainedHeadError as e:\n"
        "    print('refused:', e)\n"
        f"m = edgemoe.load(bundle={str(ckpts['bundle'])!r}, untrained_heads=True)\n"
        "r = m.run(m.sample_image(), tasks='semseg', backend='golden')\n"
        "assert 'torch' not in sys.modules\n"
        "print(r['semseg'].head, '|', r.weights)\n"
    )
    lines = run_python(code, env)
    refused = f"refused: bundle {ckpts['bundle']} has no trained head for task(s) semseg; pass "
    assert lines[0].startswith(refused + "untrained_heads=True to edgemoe.load")
    assert lines[1].startswith("untrained head | ") and "untrained head: semseg, depth" in lines[1]
    run = subprocess.run([*argv, "--untrained-heads"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["heads"] == {"depth": "untrained head"}
