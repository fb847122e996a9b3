"""`edgemoe export`: bundle + report written atomically; bad input as one-line errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from edgemoe.host.bundle import read_header, unpack, validate
from edgemoe.host.cli import main
from edgemoe.host.quantize import quantize_model
from edgemoe.host.tiling import Tiling
from edgemoe.models.m3vit import random_model
from tests.conftest import assert_one_line_error, cfg, profile

MINI = "m3vit-mini"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["export", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_export_mini_random_init(tmp_path, capsys):
    out = tmp_path / "mini.bin"
    code, stdout, err = run(
        capsys, "--config", MINI, "--profile", "lean", "--seed", "3", "--out", str(out)
    )
    assert code == 0, err
    c, p = cfg(MINI), profile("lean")
    data = out.read_bytes()
    validate(data, c, p, Tiling())
    want = quantize_model(random_model(c, 3).state_dict(), c, p)
    tensors = unpack(data, c, p, Tiling())
    assert tensors.keys() == want.tensors.keys()
    assert all((tensors[k] == want[k]).all() for k in tensors)

    report = json.loads((tmp_path / "mini.bin.report.json").read_text())
    assert report["config"] == MINI and report["profile"] == "lean"
    assert report["bundle_bytes"] == len(data)
    assert report["config_hash"] == f"0x{read_header(data).config_hash:08x}"
    assert report["saturated"] == want.report.saturated
    assert [t["name"] for t in report["tensors"]] == [t.name for t in want.report.tensors]
    text = (tmp_path / "mini.bin.report.txt").read_text()
    assert want.report.table() in text
    assert f"{len(data):,} bytes" in stdout and "saturated:" in stdout
    assert files(tmp_path) == ["mini.bin", "mini.bin.report.json", "mini.bin.report.txt"]


def test_export_tiling_and_checkpoint(tmp_path, capsys):
    c, p = cfg(MINI), profile("edge-moe")
    model = random_model(c, 5)
    with torch.no_grad():
        model.blocks[0].attn.proj.weight.mul_(40.0)  # far beyond fixed<16,2>: saturates
    ckpt = tmp_path / "m.pt"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "new" / "b.bin"  # a missing folder is created
    code, stdout, err = run(
        capsys,
        "--config", MINI, "--profile", "edge-moe", "--checkpoint", str(ckpt),
        "--out", str(out), "--tiling", "16x8", "--p", "4",
    )  # fmt: skip
    assert code == 0, err
    t = Tiling(16, 8, 4)
    data = out.read_bytes()
    h = validate(data, c, p, t)
    assert (h.lin_in, h.lin_out, h.p) == (16, 8, 4)
    want = quantize_model(model.state_dict(), c, p)
    assert want.report.saturated > 0
    tensors = unpack(data, c, p, t)
    assert all((tensors[k] == want[k]).all() for k in want.tensors)
    assert "saturated: " in stdout and "blocks.0.proj.w" in stdout
    report = json.loads(out.with_name("b.bin.report.json").read_text())
    assert report["checkpoint"] == str(ckpt) and report["saturated"] == want.report.saturated


@pytest.fixture
def nan_checkpoint(tmp_path):
    state = random_model(cfg(MINI), 0).state_dict()
    state["blocks.1.mlp.experts.htoh4.weight"][0, 0, 0] = math.nan
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "case",
    [
        "unknown config",
        "unknown profile",
        "missing checkpoint",
        "bad checkpoint",
        "nan weights",
        "out is a directory",
        "out under a file",
        "out in a read-only place",
        "report is a directory",
        "bad tiling",
        "tile out of range",
    ],
)
def test_export_errors_leave_no_files(tmp_path, capsys, case, nan_checkpoint):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = tmp_path / "b.bin"
    argv = {"--config": MINI, "--profile": "lean", "--out": str(out)}
    words: tuple[str, ...] = ()
    if case == "unknown config":
        argv["--config"], words = "m3vit-huge", ("unknown config 'm3vit-huge'",)
    elif case == "unknown profile":
        argv["--profile"], words = "tight", ("unknown profile 'tight'",)
    elif case == "missing checkpoint":
        argv["--checkpoint"], words = str(tmp_path / "none.pt"), ("none.pt",)
    elif case == "bad checkpoint":
        argv["--checkpoint"], words = str(garbage), ("garbage.pt",)
    elif case == "nan weights":
        # the checkpoint loader is the first to see it
        argv["--checkpoint"] = str(nan_checkpoint)
        words = ("blocks.1.mlp.experts.htoh4.weight", "NaN")
    elif case == "out is a directory":
        argv["--out"], words = str(tmp_path), ("is a directory",)
    elif case == "out under a file":
        argv["--out"], words = str(blocker / "b.bin"), ("cannot write",)
    elif case == "out in a read-only place":
        argv["--out"], words = "/proc/edgemoe-none/b.bin", ("cannot write",)
    elif case == "report is a directory":
        (tmp_path / "b.bin.report.txt").mkdir()
        words = ("b.bin.report.txt", "is a directory")
    elif case == "bad tiling":
        argv["--tiling"], words = "32by32", ("--tiling",)
    elif case == "tile out of range":
        argv["--tiling"], words = "0x32", ("lin_in=0",)
    before = files(tmp_path)
    code, stdout, err = run(capsys, *(x for kv in argv.items() for x in kv))
    assert_one_line_error(code, err, *words)
    assert files(tmp_path) == before


def test_late_write_failure_removes_earlier_outputs(tmp_path, capsys, monkeypatch):
    """The report failing after the bundle was written leaves neither behind."""
    from edgemoe.host import bundle

    real = bundle.write_atomic

    def failing(path, data, error=bundle.EdgeMoeError):
        if str(path).endswith(".report.txt"):
            raise error(f"cannot write {path}: No space left on device")
        real(path, data, error)

    monkeypatch.setattr("edgemoe.host.cli.write_atomic", failing)
    code, _, err = run(capsys, "--config", MINI, "--profile", "lean", "--out", str(tmp_path / "b"))
    assert_one_line_error(code, err, "No space left")
    assert files(tmp_path) == []


def test_non_finite_weights_stop_quantization(tmp_path, capsys, monkeypatch):
    """A model that reaches the quantizer with an Inf (not via a checkpoint) stops there."""
    model = random_model(cfg(MINI), 0)
    with torch.no_grad():
        model.blocks[2].mlp.fc2.bias[3] = math.inf
    monkeypatch.setattr("edgemoe.host.cli._build_model", lambda *_: (model, []))
    code, _, err = run(capsys, "--config", MINI, "--profile", "lean", "--out", str(tmp_path / "b"))
    assert_one_line_error(code, err, "blocks.2.mlp.fc2.bias", "NaN/Inf")
    assert files(tmp_path) == []
