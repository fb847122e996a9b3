"""`edgemoe train`: a mini run learns, repeats exactly, and resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgemoe.host.app.cli import main
from edgemoe.models.m3vit import M3ViT
from edgemoe.models.train import TrainOptions, lr_at
from edgemoe.models.weights import load_weights, read_tensors
from tests.conftest import assert_one_line_error, cfg

STEPS = 30
ARGS = ["train", "--config", "m3vit-mini", "--steps", str(STEPS), "--batch", "4", "--quiet"]
ARGS += ["--eval-every", "15", "--eval-images", "4", "--final-eval-images", "8", "--lr", "2e-3"]
ARGS += ["--balance", "0.01"]


def _train(capsys, out, *extra):
    code = main([*ARGS, "--out", str(out), *extra])
    text, err = capsys.readouterr()
    assert code == 0, err
    return text


def _state(out):
    return read_tensors(str(out) + ".state.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run (shared by the tests below)."""
    out = tmp_path_factory.mktemp("ref") / "mini"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def test_mini_run_lowers_the_loss_and_writes_its_files(reference):
    rec = json.loads(reference.with_suffix(".json").read_text())
    assert rec["complete"] and rec["steps"] == STEPS and rec["config"] == "m3vit-mini"
    assert rec["commands"][0].startswith("edgemoe train")
    losses = json.loads((reference.parent / "mini.state.json").read_text())["losses"]
    assert len(losses) == STEPS
    for task in ("semseg", "depth"):
        vals = [v for _, t, v in losses if t == task]
        assert len(vals) >= 6, losses
        assert np.mean(vals[-4:]) < np.mean(vals[:4]), (task, vals)
    assert set(rec["heldout"]) == {"semseg", "depth"}
    assert len(rec["evals"]) == 2
    # the shipped file is fp16 under the model's own names and loads through the checks
    tensors = read_tensors(reference.with_suffix(".safetensors"))
    model = M3ViT(cfg("m3vit-mini"))
    assert set(tensors) == set(model.state_dict())
    assert all(v.dtype == torch.float16 for v in tensors.values())
    load_weights(model, reference.with_suffix(".safetensors"))
    assert torch.equal(model.norms["depth"].weight, tensors["norms.depth.weight"].float())


def test_repeated_run_is_identical(tmp_path, capsys, reference):
    _train(capsys, tmp_path / "mini")
    a, b = _state(reference), _state(tmp_path / "mini")
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_ends_identical(tmp_path, capsys, reference):
    out = tmp_path / "mini"
    text = _train(capsys, out, "--stop-after", "13")
    assert "stopped at step 13" in text
    assert not json.loads(out.with_suffix(".json").read_text())["complete"]
    _train(capsys, out, "--resume")
    a, b = _state(reference), _state(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra = json.loads(reference.with_suffix(".json").read_text())
    rb = json.loads(out.with_suffix(".json").read_text())
    assert ra["heldout"] == rb["heldout"] and ra["loss_curve"] == rb["loss_curve"]
    assert len(rb["commands"]) == 2


def test_resume_refuses_other_options(tmp_path, capsys):
    out = tmp_path / "mini"
    _train(capsys, out, "--stop-after", "2")
    code = main([*ARGS, "--out", str(out), "--resume", "--seed", "3"])
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, "--resume", "seed")
    code = main([*ARGS, "--out", str(tmp_path / "none"), "--resume"])
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, "no training state")


def test_schedule_warms_up_then_decays():
    o = TrainOptions("m3vit-mini", steps=100, lr=1e-3, min_lr=1e-5, warmup=10).resolved()
    lrs = [lr_at(s, o) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(1e-5, rel=0.05)


def test_resume_with_another_length_replans_the_decay(tmp_path, capsys):
    out = tmp_path / "mini"
    _train(capsys, out, "--stop-after", "10")
    code = main([*ARGS, "--out", str(out), "--resume", "--steps", "20"])
    capsys.readouterr()
    assert code == 0
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["complete"] and rec["steps"] == 20 and rec["options"]["steps"] == 20
    assert rec["replans"] == [{"at_step": 10, "steps_from": STEPS, "steps_to": 20}]
    assert rec["options"]["warmup"] == STEPS // 20  # the run's own warmup is kept
    code = main([*ARGS, "--out", str(out), "--resume", "--steps", "15"])
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, "already at step 20")


def test_class_weights_favour_rare_classes():
    from edgemoe.models.data import ProceduralScenes
    from edgemoe.models.train import class_weights

    mini = cfg("m3vit-mini")
    src = ProceduralScenes(mini, 0)
    assert class_weights(src, mini, TrainOptions(config="m3vit-mini")) is None
    w = class_weights(src, mini, TrainOptions(config="m3vit-mini", class_balance=0.5))
    again = class_weights(src, mini, TrainOptions(config="m3vit-mini", class_balance=0.5))
    assert torch.equal(w, again) and w.shape == (7,)
    classes = mini.task_spec("semseg").classes
    # thin objects and people are rarer than the road: heavier in the loss
    assert w[classes.index("object")] > 1 > w[classes.index("flat")]
    assert w[classes.index("human")] > 1


def test_training_with_class_weights_records_them(tmp_path, capsys):
    from edgemoe.models.train import train

    opts = TrainOptions(
        config="m3vit-mini", steps=2, batch=2, class_balance=0.5, eval_every=2, eval_images=2,
        final_eval_images=2,
    )  # fmt: skip
    rec = train(opts, tmp_path / "cw", progress=False)
    assert rec["complete"] and len(rec["class_weights"]) == 7
