"""A board-only install (no torch, no onnxruntime): what needs them says so in one line.

Each command runs as a subprocess whose ``sitecustomize`` makes torch and
onnxruntime unimportable (:mod:`tests.api.torchless`); the bundle it runs is
exported here, with the full install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgemoe.host.app.cli import main
from tests.api.torchless import torchless_env
from tests.conftest import assert_one_line_error

EDGEMOE = str(Path(sys.executable).with_name("edgemoe"))
MINI = "m3vit-mini"


def edgemoe(env, *argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EDGEMOE, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "--config", MINI, "--steps", "1", "--out", "w"], ["PyTorch", "pip install"]),
        (["verify", "--config", MINI, "--backends", "torch,golden"], ["PyTorch", "pip install"]),
        (["bench", "--config", MINI, "--backends", "golden", "--runs", "5"], ["PyTorch"]),
        (["export", "--config", MINI, "--out", "b.bin"], ["PyTorch", "pip install"]),
        (["run", "--config", MINI, "--backend", "golden", "--out", "o"], ["PyTorch", "--bundle"]),
    ],
)
def test_what_needs_torch_says_so_in_one_line(tmp_path, argv, words):
    proc = edgemoe(torchless_env(tmp_path), *argv, cwd=tmp_path)
    assert_one_line_error(proc.returncode, proc.stderr, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["torchless-site"]  # nothing written


def test_bench_pynq_off_the_board_is_a_one_line_error(tmp_path, capsys):
    code = main(["bench", "--config", MINI, "--backends", "pynq", "--runs", "5"])
    _, err = capsys.readouterr()
    err = "\n".join(line for line in err.splitlines() if not line.startswith("bench: "))
    assert_one_line_error(code, err, "pynq", "ZCU104")


def test_train_keeps_an_existing_out(tmp_path, capsys):
    """An existing weight file is refused before any work and kept byte for byte; an
    unwritable --out is refused before any work too."""
    out = tmp_path / "run.safetensors"
    out.write_bytes(b"trained for hours")
    code = main(["train", "--config", MINI, "--steps", "1", "--out", str(out)])
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, str(out), "exists", "--force", "--resume")
    assert out.read_bytes() == b"trained for hours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.safetensors"]
    blocked = tmp_path / "run.safetensors" / "w"  # a folder that is a file
    code = main(["train", "--config", MINI, "--steps", "1", "--out", str(blocked)])
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, "cannot write", "not a folder")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--batch", "100000"], ["--batch", "1..256"]),
        (["--eval-images", "10000000"], ["--eval-images"]),
        (["--threads", "0"], ["--threads"]),
        (["--force", "--resume"], ["--force", "--resume"]),
    ],
)
def test_train_bounds(tmp_path, capsys, argv, words):
    code = main(["train", "--config", MINI, "--steps", "1", "--out", str(tmp_path / "w"), *argv])
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, *words)
    assert list(tmp_path.iterdir()) == []


def test_train_and_eval_help_describe_and_show_defaults(capsys):
    for command, default in (("train", "(default: 8)"), ("eval", "(default: 16)")):
        with pytest.raises(SystemExit):
            from edgemoe.host.app.cli import build_parser

            build_parser().parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert default in text, text
        assert text.count("\n\n") >= 2  # a description paragraph before the options


def test_csim_without_the_hls_headers_says_what_to_install(tmp_path):
    """A board-only install has no hls4ml: the csim backend names what to install."""
    bundle = tmp_path / "b.bin"
    assert main(["export", "--config", MINI, "--random", "--out", str(bundle)]) == 0
    env = torchless_env(tmp_path, hidden=("hls4ml",))
    env.pop("XILINX_HLS", None)
    env["EDGEMOE_CACHE"] = str(tmp_path / "cache")  # nothing built yet
    proc = edgemoe(env, "run", "--bundle", str(bundle), "--out", str(tmp_path / "o"))
    assert_one_line_error(proc.returncode, proc.stderr, "ap_int.h", "install hls4ml")
    assert not (tmp_path / "o").exists()


def test_bench_runs_a_bundle_without_torch(tmp_path):
    """On a board: `bench --bundle` times the fixed-point backends from the bundle alone;
    the float rows are skipped, saying why."""
    import json

    bundle = tmp_path / "b.bin"
    assert main(["export", "--config", MINI, "--out", str(bundle)]) == 0
    js = tmp_path / "bench.json"
    proc = edgemoe(
        torchless_env(tmp_path),
        *("bench", "--bundle", str(bundle), "--backends", "golden,torch", "--runs", "5"),
        *("--json", str(js)),
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    rows = json.loads(js.read_text())["backends"]
    assert rows["golden"]["status"] == "ok" and rows["torch"]["status"] == "skipped"
    assert "PyTorch is not installed" in rows["torch"]["notes"][0]
    assert "trained on procedural street scenes" in json.loads(js.read_text())["weights"]
