"""`edgemoe eval` reads depth in the data's unit: M3ViT's metrics on its Cityscapes layout
(disparity), metric depth on procedural scenes; tables, JSON and colour bars say which.

The model under test predicts constants (its heads' weights zeroed, their biases set), so
every metric has a value computed here by hand from the label files.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgemoe.host.app.cli import main
from edgemoe.models.data import HELDOUT_SEED, ProceduralScenes, open_source, trained_depth_unit
from edgemoe.models.m3vit import random_model
from edgemoe.models.weights import save_tensors
from tests.conftest import assert_one_line_error, cfg
from tests.models.test_data import _write_fixture

MINI = "m3vit-mini"
#: What the constant model predicts everywhere: depth (disparity, or metres on procedural
#: scenes) and the semseg class.
DISPARITY, METRES, CLASS = 0.15, 20.0, 2


def _constant_checkpoint(path, depth: float) -> str:
    """A mini checkpoint (no training record) whose heads output ``depth`` and ``CLASS``."""
    model = random_model(cfg(MINI), 0)
    with torch.no_grad():
        for task in ("semseg", "depth"):
            model.heads[task].weight.zero_()
            model.heads[task].bias.zero_()
        model.heads["depth"].bias.fill_(depth)
        model.heads["semseg"].bias[CLASS] = 5.0
    save_tensors(model.state_dict(), path)
    return str(path)


def _eval(capsys, tmp_path, *argv):
    js = tmp_path / "eval.json"
    code = main(["eval", "--config", MINI, *argv, "--json", str(js), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(js.read_text()), out


def test_mtan_layout_gets_m3vit_metrics_in_disparity(tmp_path, capsys):
    data = tmp_path / "data"
    _write_fixture(data)
    # M3ViT's own ignore value beside MTAN's −1: both are left out; class 6 (vehicle) is
    # nowhere in the labels nor the predictions, and still counts in M3ViT's mean
    for i in (0, 1):
        lab = np.load(data / "val" / "label_7" / f"{i}.npy")
        lab[lab == 6] = 255
        lab[:4, :] = 255 if i == 0 else lab[:4, :]
        np.save(data / "val" / "label_7" / f"{i}.npy", lab)
    ck = _constant_checkpoint(tmp_path / "constant.safetensors", DISPARITY)
    result, out = _eval(
        capsys, tmp_path, "--checkpoint", ck, "--data", str(data), "--images", "2",
        "--backends", "torch,golden", "--profile", "lean",
    )  # fmt: skip

    g = np.stack([np.load(data / "val" / "depth" / f"{i}.npy")[..., 0] for i in (0, 1)])
    g = g[g != 0].astype(np.float64)
    p = float(np.float32(DISPARITY))
    rmse = np.sqrt(np.mean((p - g) ** 2))
    log_rmse = np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2))
    labels = np.stack([np.load(data / "val" / "label_7" / f"{i}.npy") for i in (0, 1)])
    valid = (labels != -1) & (labels != 255)
    # every pixel predicted CLASS: its IoU is its share of the labelled pixels; the other
    # six classes score 0 (vehicle absent: IoU undefined) and count in M3ViT's mean over
    # all seven (a mean over the classes present would be iou / 6)
    iou = float((labels[valid] == CLASS).sum() / valid.sum())
    assert not (labels == 6).any() and (labels == 255).sum() > (labels == -1).sum() > 0

    assert result["depth_unit"] == "disparity"
    for row in result["rows"]:
        if row["task"] == "depth":
            assert row["unit"] == "disparity"
            assert set(row) >= {"rmse", "log_rmse"} and "abs_rel" not in row
            assert row["pixels"] == g.size
            assert row["rmse"] == pytest.approx(rmse, rel=1e-5)
            assert row["log_rmse"] == pytest.approx(log_rmse, rel=1e-5)
        else:
            assert row["pixels"] == int(valid.sum())
            assert row["iou"]["object"] == pytest.approx(iou)
            assert row["miou"] == pytest.approx(iou / 7)
    assert "RMSE (disp)" in out and "log-RMSE" in out and "MTAN's scale" in out
    assert "abs_rel" not in out and "(m)" not in out


def test_procedural_eval_keeps_metres(tmp_path, capsys):
    ck = _constant_checkpoint(tmp_path / "constant.safetensors", METRES)
    result, out = _eval(
        capsys, tmp_path, "--checkpoint", ck, "--images", "2", "--backends", "torch"
    )
    g = ProceduralScenes(cfg(MINI), HELDOUT_SEED).batch("val", np.arange(2)).labels["depth"]
    g = g[g > 0].astype(np.float64)
    (row,) = [r for r in result["rows"] if r["task"] == "depth"]
    assert result["depth_unit"] == "m" and row["unit"] == "m"
    assert row["abs_rel"] == pytest.approx(np.mean(np.abs(METRES - g) / g), rel=1e-5)
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean((METRES - g) ** 2)), rel=1e-5)
    ratio = np.maximum(METRES / g, g / METRES)
    assert row["delta1"] == pytest.approx(np.mean(ratio < 1.25))
    assert "log_rmse" not in row
    assert "RMSE (m)" in out and "abs err (m)" in out and "δ<1.25" in out
    assert "disp" not in out


def test_mtan_eval_bad_input_is_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    _write_fixture(data)
    ck = _constant_checkpoint(tmp_path / "constant.safetensors", DISPARITY)
    # the shipped mini was trained on procedural scenes: it predicts metres, not disparity
    code = main(["eval", "--config", MINI, "--data", str(data), "--quiet"])
    assert_one_line_error(code, capsys.readouterr()[1], "predicts depth in m", "as disparity")
    # depth asked for (the config has it) but the folder lacks depth/
    import shutil

    shutil.rmtree(data / "val" / "depth")
    code = main(["eval", "--config", MINI, "--checkpoint", ck, "--data", str(data), "--quiet"])
    assert_one_line_error(code, capsys.readouterr()[1], "missing", "depth/")


def test_units_follow_the_training_data(tmp_path, mini):
    from edgemoe.host.app.plots import scalar_label

    ck = tmp_path / "ck.safetensors"
    ck.write_bytes(b"")
    assert trained_depth_unit(ck) is None  # no record: the figure's default, metres
    ck.with_suffix(".json").write_text(json.dumps({"data": "/data/cityscapes"}))
    assert trained_depth_unit(ck) == "disparity"
    ck.with_suffix(".json").write_text(json.dumps({"data": "procedural"}))
    assert trained_depth_unit(ck) == "m"
    depth = mini.task_spec("depth")
    assert scalar_label(depth) == "depth (m)"
    assert scalar_label(depth, "m") == "depth (m)"
    assert scalar_label(depth, "disparity") == "depth: disparity (MTAN scale)"


def test_label_255_reads_as_ignore(tmp_path, mini):
    _write_fixture(tmp_path)
    lab = np.load(tmp_path / "val" / "label_7" / "1.npy").astype(np.uint8)  # −1 wraps to 255
    np.save(tmp_path / "val" / "label_7" / "1.npy", lab)
    b = open_source(tmp_path, mini).batch("val", np.array([1]))
    assert (b.labels["semseg"][0] == np.where(lab == 255, -1, lab.astype(np.int64))).all()
    assert (b.labels["semseg"] == -1).any()


def test_run_colour_bar_names_the_trained_unit(tmp_path, capsys, monkeypatch):
    import edgemoe.host.app.run as run_mod

    ck = _constant_checkpoint(tmp_path / "constant.safetensors", DISPARITY)
    (tmp_path / "constant.json").write_text(json.dumps({"data": str(tmp_path / "data")}))
    seen = []
    real = run_mod.task_figure

    def spy(path, image, spec, output, title, subtitle="", unit=None):
        seen.append(unit)
        real(path, image, spec, output, title, subtitle, unit)

    monkeypatch.setattr(run_mod, "task_figure", spy)
    argv = ["run", "--config", MINI, "--backend", "golden", "--checkpoint", ck]
    code = main([*argv, "--out", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr()[1]
    assert seen == [None, "disparity"]  # semseg has no unit; depth is disparity


def test_training_heldout_miou_is_m3vits_on_the_cityscapes_layout(tmp_path, mini):
    from edgemoe.models.train import evaluate

    _write_fixture(tmp_path)
    for i in (0, 1):  # class 6 absent from the labels (and the predictions)
        lab = np.load(tmp_path / "val" / "label_7" / f"{i}.npy")
        np.save(tmp_path / "val" / "label_7" / f"{i}.npy", np.where(lab == 6, -1, lab))
    model = random_model(mini, 0)
    with torch.no_grad():
        model.heads["semseg"].weight.zero_()
        model.heads["semseg"].bias.zero_()
        model.heads["semseg"].bias[CLASS] = 5.0
    m = evaluate(model, open_source(tmp_path, mini), 2)["semseg"]
    # one class predicted: the other six score 0 and count (vehicle, absent, too), as in
    # `edgemoe eval`; a mean over the classes present would divide by 6
    assert m["iou"]["vehicle"] is None
    assert m["miou"] == pytest.approx(m["iou"]["object"] / 7)
