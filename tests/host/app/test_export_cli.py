"""`edgemoe export`: bundle + report written atomically; bad input as one-line errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from edgemoe.host.app.cli import main
from edgemoe.host.contracts.profile import PER_TENSOR_CLASSES
from edgemoe.host.contracts.tiling import Tiling
from edgemoe.host.export.bundle import read_header, unpack, validate
from edgemoe.host.export.quantize import quantize_model
from edgemoe.models.checkpoint import LoadResult
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
        capsys, "--config", MINI, "--profile", "lean", "--seed", "3", "--random", "--out", str(out)
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
        # a weight tensor 80x larger gets a binary point of its own (fixed<16,*>) ...
        model.blocks[0].attn.proj.weight.mul_(80.0)
        # ... a compile-time format saturates: LayerNorm gamma beyond fixed<16,5>
        model.blocks[0].norm1.weight.mul_(80.0)
    ckpt = tmp_path / "m.pt"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / "new" / "b.bin"  # a missing folder is created
    code, stdout, err = run(
        capsys,
        "--config", MINI, "--profile", "edge-moe", "--checkpoint", str(ckpt),
        "--out", str(out), "--tiling", "16x8", "--p", "4", "--allow-saturation",
    )  # fmt: skip
    assert code == 0, err
    t = Tiling(16, 8, 4)
    data = out.read_bytes()
    h = validate(data, c, p, t)
    assert (h.lin_in, h.lin_out, h.p) == (16, 8, 4)
    want = quantize_model(model.state_dict(), c, p)
    assert want.report.saturated > 0
    assert [x.name for x in want.report.saturated_tensors()] == ["blocks.0.ln1.g"]
    assert want.fmt("blocks.0.proj.w").int_bits >= want.fmt("blocks.1.proj.w").int_bits + 6
    tensors = unpack(data, c, p, t)
    assert all((tensors[k] == want[k]).all() for k in want.tensors)
    assert "saturated: " in stdout and "blocks.0.ln1.g" in stdout
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
    from edgemoe import files as atomic

    real = atomic.write_bytes_atomic

    def failing(path, data, flag="", error=atomic.EdgeMoeError):
        if str(path).endswith(".report.txt"):
            raise error(f"cannot write {path}: No space left on device")
        real(path, data, flag, error)

    monkeypatch.setattr("edgemoe.host.app.export.write_bytes_atomic", failing)
    code, _, err = run(capsys, "--config", MINI, "--profile", "lean", "--out", str(tmp_path / "b"))
    assert_one_line_error(code, err, "No space left")
    assert files(tmp_path) == []


def test_non_finite_weights_stop_quantization(tmp_path, capsys, monkeypatch):
    """A model that reaches the quantizer with an Inf (not via a checkpoint) stops there."""
    model = random_model(cfg(MINI), 0)
    with torch.no_grad():
        model.blocks[2].mlp.fc2.bias[3] = math.inf
    loaded = LoadResult([])
    monkeypatch.setattr("edgemoe.host.app.args.build_model", lambda *_: (model, loaded))
    code, _, err = run(capsys, "--config", MINI, "--profile", "lean", "--out", str(tmp_path / "b"))
    assert_one_line_error(code, err, "blocks.2.mlp.fc2.bias", "NaN/Inf")
    assert files(tmp_path) == []


def _checkpoint(tmp_path, mutate) -> str:
    model = random_model(cfg(MINI), 0)
    with torch.no_grad():
        mutate(model)
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    return str(path)


def _blow_up_v(model) -> None:
    """V of block 2 far beyond attn_qkv at run time; every weight still fits its format."""
    D = model.cfg.embed_dim
    model.blocks[2].norm1.weight.fill_(15.0)  # fixed<16,5>: +-16
    model.blocks[2].attn.qkv.weight[2 * D :] *= 50.0  # fixed<16,3>: +-4


def test_export_refuses_a_checkpoint_that_would_saturate(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, _blow_up_v)
    out = tmp_path / "b.bin"
    argv = ["--config", MINI, "--profile", "lean", "--checkpoint", ckpt, "--out", str(out)]
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, "block2.v", "attn_qkv", "headroom", "--allow-saturation")
    assert not out.exists() and not out.with_name("b.bin.report.json").exists()

    code, stdout, err = run(capsys, *argv, "--allow-saturation")
    assert code == 0, err
    assert "warning:" in err and "block2.v" in err and "saturate" in err
    report = json.loads(out.with_name("b.bin.report.json").read_text())
    sat = [q for q in report["calibration"]["quantities"] if q["saturated"]]
    assert "block2.v" in [q["name"] for q in sat]
    assert all(q["headroom_bits"] < 0 for q in sat)


def test_export_warns_below_one_bit_of_headroom(tmp_path, capsys):
    def tight_gamma(model):
        model.blocks[0].norm1.weight[5] = 9.5  # fixed<16,5> holds +-16: 0.75 bits left

    ckpt = _checkpoint(tmp_path, tight_gamma)
    code, _, err = run(
        capsys, "--config", MINI, "--profile", "lean", "--checkpoint", ckpt,
        "--out", str(tmp_path / "b.bin"),
    )  # fmt: skip
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1 and "blocks.0.ln1.g" in lines[0] and "0.75 bits" in lines[0]


def test_export_calibration_report_and_image_folder(tmp_path, capsys):
    from PIL import Image

    from edgemoe.host.contracts.images import scene_images

    folder = tmp_path / "calib"
    folder.mkdir()
    for i, im in enumerate(scene_images(cfg(MINI), 2, 7)):
        Image.fromarray(im).save(folder / f"{i}.png")
    out = tmp_path / "b.bin"
    code, stdout, err = run(
        capsys, "--config", MINI, "--profile", "lean", "--out", str(out),
        "--calib-images", str(folder),
    )  # fmt: skip
    assert code == 0, err
    assert "calibration: 2 image(s)" in stdout and "least headroom" in stdout
    cal = json.loads(out.with_name("b.bin.report.json").read_text())["calibration"]
    assert cal["images"] == 2 and str(folder) in cal["source"]
    names = {q["name"] for q in cal["quantities"]}
    scaled = {q["name"] for q in cal["scaled"]}
    assert not names & scaled
    assert {q["class"] for q in cal["scaled"]} == set(PER_TENSOR_CLASSES)
    assert all(q["saturated"] == 0 for q in cal["scaled"])
    names |= scaled
    c = cfg(MINI)
    for i in range(c.depth):
        for what in ("ln1", "ln1.norm", "q", "k", "v", "score", "attn", "proj", "fc1", "fc2"):
            assert f"block{i}.{what}" in names
    assert {f"block{b}.gate" for b in c.moe_blocks} <= names
    assert {"patch.w", "token_bias", "blocks.0.qkv.w"} <= names
    assert set(cal["classes"]) == set(profile("lean").formats) - {
        "pixel",
        "prob",
        "ln_stat",
        *PER_TENSOR_CLASSES,
        "dec_feat",  # the mini's light heads: no decoder on the datapath
        "dec_out",
    }
    assert "# calibration: 2 image(s)" in out.with_name("b.bin.report.txt").read_text()

    code, _, err = run(
        capsys, "--config", MINI, "--profile", "lean", "--out", str(out),
        "--calib-images", str(tmp_path / "none"),
    )  # fmt: skip
    assert_one_line_error(code, err, "none", "not a directory")


def test_export_defaults_to_the_shipped_checkpoint_like_model_export(tmp_path, capsys):
    """No weight option: the shipped checkpoint, said so; the file is the one
    ``Model.export`` writes, byte for byte (two exports of one model)."""
    import edgemoe
    from edgemoe.host.export.deployment import read_deployment
    from edgemoe.models.shipped import shipped_checkpoint

    out = tmp_path / "cli.bin"
    code, stdout, err = run(capsys, "--config", MINI, "--out", str(out))
    assert code == 0, err
    assert "weights: the config's shipped checkpoint m3vit-mini.safetensors" in stdout
    dep = read_deployment(out.read_bytes())
    assert dep.source.checkpoint == str(shipped_checkpoint(MINI))
    assert dep.source.trained_on.startswith("procedural street scenes")
    api = edgemoe.load(MINI).export(tmp_path / "api.bin")
    assert api.read_bytes() == out.read_bytes()
    report = json.loads((tmp_path / "cli.bin.report.json").read_text())
    assert "trained on procedural street scenes" in report["weights"]
