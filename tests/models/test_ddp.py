"""``torchrun --nproc_per_node 2 -m edgemoe train``: data-parallel training on 2 CPU processes.

The mini, a few steps, both tasks every step: the loss falls, the ranks hold identical
weights after every step (the record's per-step checksum drift), and the run at global
batch 2B matches a one-process run at batch 2B to float rounding, step by step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgemoe.host.app.cli import main
from edgemoe.models.weights import read_tensors

STEPS = 10
ARGS = ["train", "--config", "m3vit-mini", "--steps", str(STEPS), "--batch", "4"]
ARGS += ["--tasks", "both", "--lr", "2e-3", "--eval-every", "5", "--eval-images", "2"]
ARGS += ["--final-eval-images", "2", "--quiet"]


def _torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "edgemoe"]
    return subprocess.run(
        [*cmd, *ARGS, "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-process run, a 1-process run of the same options, a 2-process run resumed."""
    root = tmp_path_factory.mktemp("ddp")
    two = _torchrun(root / "two")
    assert two.returncode == 0, two.stderr[-2000:]
    assert main([*ARGS, "--out", str(root / "one")]) == 0
    first = _torchrun(root / "resumed", "--stop-after", "5")
    assert first.returncode == 0, first.stderr[-2000:]
    second = _torchrun(root / "resumed", "--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    return root


def _meta(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".state.json").read_text())


def _weights(path: Path) -> dict[str, np.ndarray]:
    t = read_tensors(path.with_name(path.name + ".state.safetensors"))
    return {k: v.numpy() for k, v in t.items() if k.startswith("model.")}


def test_two_processes_learn_with_identical_weights_on_every_rank(runs):
    meta = _meta(runs / "two")
    assert meta["world_sizes"] == [2]
    losses = [v for _, _, v in meta["losses"]]
    assert len(losses) == STEPS
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    # a float64 checksum of every parameter, compared across ranks after every step
    assert meta["rank_drift"] == [0.0] * STEPS
    rec = json.loads((runs / "two.json").read_text())
    assert rec["complete"] and rec["rank_drift_max"] == 0.0 and rec["world_sizes"] == [2]


def test_two_processes_match_one_process_at_the_same_global_batch(runs):
    one, two = _meta(runs / "one"), _meta(runs / "two")
    l1 = np.array([v for _, _, v in one["losses"]])
    l2 = np.array([v for _, _, v in two["losses"]])
    assert np.allclose(l1[:5], l2[:5], rtol=1e-5, atol=0), (l1, l2)
    w1, w2 = _weights(runs / "one"), _weights(runs / "two")
    assert w1.keys() == w2.keys()
    worst = max(float(np.abs(w1[k] - w2[k]).max()) for k in w1)
    assert worst < 1e-4, worst


def test_two_process_resume_continues_the_run(runs):
    meta = _meta(runs / "resumed")
    assert meta["step"] == STEPS and meta["world_sizes"] == [2, 2]
    a, b = _weights(runs / "resumed"), _weights(runs / "two")
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst < 1e-5, worst
