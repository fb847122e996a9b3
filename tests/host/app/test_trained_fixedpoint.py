"""Fixed point on trained weights over scene images (issue 14): budgets, headroom, C-sim.

Three kinds of weights: the published deployment's statistics (synthesised
here, :mod:`edgemoe.models.synthetic`), the mini trained checkpoint and the
shipped tiny checkpoint (``models/checkpoints/{config}.safetensors``; the
tests skip with a one-line reason while a file is absent).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edgemoe.host.app.fidelity import measure, routing_margins
from edgemoe.host.contracts.images import scene_images
from edgemoe.host.driver.backends import Workload, get_backend
from edgemoe.host.export.calibrate import TARGET_BITS, calibrate
from edgemoe.models import DEFAULT_CONFIG
from edgemoe.models.checkpoint import load_checkpoint
from edgemoe.models.m3vit import M3ViT, normalize
from edgemoe.models.synthetic import PUBLISHED, published_statistics_model
from tests.conftest import cfg, profile

TINY = DEFAULT_CONFIG
MINI = "m3vit-mini"
PROFILES = ("lean", "edge-moe")
CHECKPOINT_DIR = Path(
    os.environ.get(
        "EDGEMOE_CHECKPOINT_DIR", Path(__file__).resolve().parents[3] / "models" / "checkpoints"
    )
)
#: Held-out scenes: seeds no calibration or training default uses.
HELDOUT_SEED = 10_000
HELDOUT_IMAGES = 4
#: The published-statistics acceptance: routing through golden (issue 14).
PUBLISHED_ROUTING_BUDGET = 0.99


@functools.cache
def published(cname: str = TINY) -> M3ViT:
    return published_statistics_model(cfg(cname), 0)


def trained(cname: str) -> M3ViT:
    """The trained checkpoint of ``cname``, or a skip naming the missing file."""
    path = CHECKPOINT_DIR / f"{cname}.safetensors"
    if not path.is_file():
        pytest.skip(f"trained checkpoint {path} not present yet")
    return _load(str(path), cname)


@functools.cache
def _load(path: str, cname: str) -> M3ViT:
    model = M3ViT(cfg(cname), seed=0)
    load_checkpoint(model, path)
    return model.eval()


@functools.cache
def workload(kind: str, cname: str, pname: str) -> Workload:
    model = published(cname) if kind == "published" else trained(cname)
    return Workload(cfg(cname), profile(pname), model)


def heldout(cname: str) -> np.ndarray:
    return scene_images(cfg(cname), HELDOUT_IMAGES, HELDOUT_SEED)


# -- the published deployment's statistics ----------------------------------------


def test_published_fixture_has_the_published_magnitudes():
    m, c = published(), cfg(TINY)
    sd = m.state_dict()
    D = c.embed_dim
    gammas = [sd[f"blocks.{i}.norm{n}.weight"].abs().max() for i in range(c.depth) for n in (1, 2)]
    betas = [sd[f"blocks.{i}.norm{n}.bias"].abs().max() for i in range(c.depth) for n in (1, 2)]
    assert max(gammas) == pytest.approx(PUBLISHED["ln_gamma"])
    assert max(betas) == pytest.approx(PUBLISHED["ln_beta"])
    qkv = max(sd[f"blocks.{i}.attn.qkv.weight"].abs().max() for i in range(c.depth))
    assert qkv == pytest.approx(PUBLISHED["qkv_weight"])
    assert sd["pos_embed"].abs().max() == pytest.approx(PUBLISHED["pos_embed"])
    rec: dict = {}
    with torch.no_grad():
        m.backbone(normalize(heldout(TINY), c), "semseg", record=rec)
    k10 = rec["block10.qkv"][..., D : 2 * D].abs()
    assert k10.max() > 50  # the bias-dominated K channels of block 10, on every token
    assert int((k10.amin(dim=(0, 1)) > 40).sum()) == 2
    out = rec["block11.mlp"]
    assert out.min() < 0.9 * PUBLISHED["block11_min"] and out.max() > PUBLISHED["block11_max"]


@pytest.mark.parametrize("pname", PROFILES)
def test_published_statistics_calibrate_with_two_bits_of_headroom(pname):
    wl = workload("published", TINY, pname)
    cal = calibrate(wl.model, wl.cfg, wl.profile, heldout(TINY), wl.quantized.report)
    assert cal.saturating() == []
    tight = min(cal.quantities, key=lambda q: q.headroom_bits)
    assert tight.headroom_bits >= TARGET_BITS, tight


@pytest.mark.parametrize("pname", PROFILES)
@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_published_statistics_zero_saturation_and_routing(pname, task):
    wl = workload("published", TINY, pname)
    f, _, _ = measure(wl, heldout(TINY), task)
    print(f"published {pname} {task}: {f}")
    assert f.saturations == 0
    assert f.routing_agreement >= PUBLISHED_ROUTING_BUDGET


@pytest.mark.parametrize("kind, cname", [("published", TINY), ("trained", TINY)])
def test_routing_flips_only_on_near_ties(kind, cname):
    """Every flip is a decision whose margin lies within the measured gate error."""
    wl = workload(kind, cname, "lean")
    r = routing_margins(wl, heldout(cname))
    assert r["flips_outside_error"] == 0, r["flip_margins"]
    # the gate path's own rounding stays below the error it inherits from upstream
    assert r["gate_error_own"]["99"] < r["gate_error_upstream"]["99"]


# -- trained checkpoints ------------------------------------------------------------


#: Known misses of issue 14's trained budgets on the shipped checkpoints (open): strict, so
#: a fix that meets the budget turns these into failures to be removed.
TASK_DELTA_MISSES = {
    (MINI, "semseg"): "mini semseg: golden's class map differs from float's on 0.505 % "
    "(task delta 0.00505 > 0.005) on the held-out scenes",
}


@pytest.mark.parametrize("cname", [TINY, MINI])
@pytest.mark.parametrize("pname", PROFILES)
@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_trained_checkpoint_within_the_profile_budgets(cname, pname, task, request):
    if (cname, task) in TASK_DELTA_MISSES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=TASK_DELTA_MISSES[cname, task]))
    wl = workload("trained", cname, pname)
    f, _, _ = measure(wl, heldout(cname), task)
    print(f"{cname} {pname} {task}: {f}")
    assert f.missed(wl.profile.budgets) == []


@pytest.mark.parametrize("cname", [TINY, MINI])
@pytest.mark.parametrize("pname", PROFILES)
def test_trained_checkpoint_calibrates_with_two_bits_of_headroom(cname, pname):
    wl = workload("trained", cname, pname)
    cal = calibrate(wl.model, wl.cfg, wl.profile, heldout(cname), wl.quantized.report)
    tight = min(cal.quantities, key=lambda q: q.headroom_bits)
    assert tight.headroom_bits >= TARGET_BITS, tight


# -- golden == C-sim, bit for bit, on them (Contract A) -------------------------------


@pytest.mark.parametrize(
    "kind, cname, pname",
    [
        ("published", TINY, "lean"),
        ("published", TINY, "edge-moe"),
        ("trained", TINY, "lean"),
        ("trained", TINY, "edge-moe"),
        ("trained", MINI, "lean"),
        ("trained", MINI, "edge-moe"),
    ],
)
def test_golden_equals_csim_on_trained_weights(kind, cname, pname):
    wl = workload(kind, cname, pname)
    images = heldout(cname)[:2]
    for task in wl.cfg.task_names:
        gold = get_backend("golden").run(wl, images, task)
        csim = get_backend("csim-direct").run(wl, images, task)
        assert np.array_equal(gold.tokens, csim.tokens), task
