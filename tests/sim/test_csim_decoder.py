"""The task decoder on the accelerator (issue 24): golden == C-sim bit for bit on every
decoder stage, both profiles, both schedules, random and trained weights, the mini with
M3ViT's ``pup`` head and the tiny; the decoder's debug stops and the kernel's checks.

The layout of a decoding call's output (tokens, then the stage) is the decoder contract's
(:mod:`edgemoe.host.contracts.decoder`).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.images import random_images, to_patches
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.export.bundle import pack
from edgemoe.host.export.quantize import quantize_model
from edgemoe.models import DEFAULT_CONFIG
from edgemoe.models.data import ProceduralScenes
from edgemoe.sim import csim
from edgemoe.sim.golden import Golden
from tests.conftest import cfg, model, profile

MINI_PUP = "m3vit-mini-pup"
BAD_DEBUG_STOP = 7  # STATUS_BAD_DEBUG_STOP


def state(m):
    return {k: v.detach().numpy() for k, v in m.state_dict().items()}


@functools.cache
def kernel(cname: str, pname: str) -> csim.CSim:
    return csim.CSim(cfg(cname), profile(pname))


def setup(cname: str, pname: str, seed: int, images: int, trained: bool = False):
    c, p = cfg(cname), profile(pname)
    if trained:
        from tests.sim.test_golden_decoder import mini_pup

        qm = quantize_model(state(mini_pup()), c, p)
        imgs = ProceduralScenes(c).batch("val", np.arange(images)).images
    else:
        qm = quantize_model(state(model(cname, seed)), c, p)
        imgs = random_images(c, images, seed)
    return qm, pack(qm, DEFAULT_TILING), to_patches(imgs, c)


def stage_out(c, r: csim.CSimRun, stage: dp.Stage, t: Tiling = DEFAULT_TILING) -> np.ndarray:
    """A decoding call's stage, per image, from the output buffer (tokens first)."""
    at = dp.tokens_words(c, t)
    words = r.buffer[:, at : at + dp.stage_words(c, stage, t)]
    if stage.kind == dp.NORM:
        return words.reshape(len(words), *stage.shape).astype(np.int64)
    return np.stack([dp.unpack_map(c, w, stage.shape, t) for w in words])


def assert_decodes(
    k: csim.CSim, qm, bundle, patches, task, stops: bool, t: Tiling = DEFAULT_TILING
) -> None:
    """Tokens and logits of a decoding call equal golden's; with `stops`, every decoder
    stage through its debug stop too."""
    c = k.cfg
    g = Golden(qm)
    tokens = g.run(patches, task).tokens
    dec = g.decode(tokens, task, record=stops)
    plan = dp.decoder_plan(c, task, t)
    r = k.run(bundle, patches, c.task_id(task))
    assert r.status == 0
    assert np.array_equal(r.output, tokens), "the tokens before the decoder"
    assert np.array_equal(stage_out(c, r, plan.stages[-1], t), dec.logits), "the logits"
    if not stops:
        return
    assert list(dec.stages) == [s.name for s in plan.stages]
    for s in plan.stages:
        r = k.run(bundle, patches, c.task_id(task), debug_stop=s.code)
        assert r.status == 0, s.name
        assert np.array_equal(r.output, tokens), f"tokens at {s.name}"
        assert np.array_equal(stage_out(c, r, s), dec.stages[s.name]), (
            f"first difference at {s.name}"
        )


@pytest.mark.parametrize("pname", ["lean", "edge-moe"])
@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_mini_pup_every_decoder_stage_bit_exact(pname, task):
    """Every stage through its debug stop, two images (a debug stop runs image-major: one
    image decodes on the linear lane while the other's backbone runs beside it)."""
    qm, bundle, patches = setup(MINI_PUP, pname, 0, 2)
    assert_decodes(kernel(MINI_PUP, pname), qm, bundle, patches, task, stops=True)


@pytest.mark.parametrize("pname", ["lean", "edge-moe"])
def test_mini_pup_expert_major_call_decodes_every_image(pname):
    """Three images in one call: expert-major, the images come back from their output
    regions (past the last MoE block) for the decoder."""
    qm, bundle, patches = setup(MINI_PUP, pname, 1, 3)
    for task in ("semseg", "depth"):
        assert_decodes(kernel(MINI_PUP, pname), qm, bundle, patches, task, stops=False)


@pytest.mark.parametrize("t", [Tiling(8, 16, 4), Tiling(24, 12, 3)], ids=lambda t: t.key)
def test_mini_pup_other_tilings(t):
    """Other tiles of the linear unit: the taps padded to other input tiles, other
    chunks, banks and x2 lanes; every stage."""
    c, p = cfg(MINI_PUP), profile("lean")
    qm = quantize_model(state(model(MINI_PUP, 3)), c, p)
    patches = to_patches(random_images(c, 1, 3), c)
    k = csim.CSim(c, p, t)
    assert_decodes(k, qm, pack(qm, t), patches, "semseg", stops=True, t=t)


def test_mini_pup_trained_weights_on_scenes():
    """The shipped mini-pup (trained decoders) on held-out procedural scenes, every stage."""
    qm, bundle, patches = setup(MINI_PUP, "lean", 0, 2, trained=True)
    for task in ("semseg", "depth"):
        assert_decodes(kernel(MINI_PUP, "lean"), qm, bundle, patches, task, stops=True)


def test_tiny_fused_classifier_at_a_tiling_of_two_epilogue_rounds():
    """LIN 8 x 16: the fused classifier's OUT_CONV_H writes h in two rounds a bank
    (LIN_OUT > H_BANKS), its h tiles are 24 of 8 channels."""
    t = Tiling(8, 16, 4)
    c = cfg(DEFAULT_CONFIG)
    assert dp.decoder_plan(c, 0, t).fused
    qm, _, patches = setup(DEFAULT_CONFIG, "lean", 0, 1)
    k = csim.CSim(c, profile("lean"), t)
    assert_decodes(k, qm, pack(qm, t), patches, 0, stops=False, t=t)


@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_tiny_decoder_bit_exact(task):
    """The tiny's whole decoder (6.4 GMAC a task-image; about 4 s of C-sim here)."""
    qm, bundle, patches = setup(DEFAULT_CONFIG, "lean", 0, 1)
    assert_decodes(kernel(DEFAULT_CONFIG, "lean"), qm, bundle, patches, task, stops=False)


def test_tiny_decoder_debug_stops_at_the_last_convolution():
    """The largest stage (64 x 128 x 256) through its debug stops: the x2 before conv_3,
    and conv_3 itself, which a call to the logits never stores (its plan fuses the
    classifier into conv_3's bands: the tiny logits tests) but a stop at it does."""
    qm, bundle, patches = setup(DEFAULT_CONFIG, "lean", 2, 1)
    c = cfg(DEFAULT_CONFIG)
    g = Golden(qm)
    dec = g.decode(g.run(patches, 0).tokens, 0, record=True)
    plan = dp.decoder_plan(c, 0, DEFAULT_TILING)
    assert plan.fused
    for name in ("dec.up_3", "dec.conv_3"):
        s = plan.stage(name)
        r = kernel(DEFAULT_CONFIG, "lean").run(bundle, patches, 0, debug_stop=s.code)
        assert r.status == 0 and np.array_equal(stage_out(c, r, s), dec.stages[name]), name


def test_tokens_stop_returns_the_backbone_tokens():
    """debug_stop = tokens_stop_code on a pup task: the tokens at the tokens' stride, as a
    call of a task without a decoder returns them."""
    qm, bundle, patches = setup(MINI_PUP, "lean", 2, 2)
    c = cfg(MINI_PUP)
    want = Golden(qm).run(patches, 0).tokens
    r = kernel(MINI_PUP, "lean").run(bundle, patches, 0, debug_stop=dp.tokens_stop_code(c))
    assert r.status == 0 and np.array_equal(r.output, want)
    assert r.buffer.shape[1] == c.num_tokens * c.embed_dim


def test_decoder_stops_past_the_task_or_on_a_task_without_one_are_refused():
    qm, bundle, patches = setup(MINI_PUP, "lean", 0, 1)
    c = cfg(MINI_PUP)
    last = dp.decoder_plan(c, 0, DEFAULT_TILING).stages[-1].code
    out = np.full((1, dp.max_output_words(c, 0, DEFAULT_TILING)), 7, dtype=np.int32)
    r = kernel(MINI_PUP, "lean").run(bundle, patches, 0, debug_stop=last + 1, output=out)
    assert r.status == BAD_DEBUG_STOP and (out == 7).all()  # nothing written
    mini = cfg("m3vit-mini")  # linear heads: no decoder, no decoder stops
    qm = quantize_model(state(model("m3vit-mini", 0)), mini, profile("lean"))
    out = np.full((1, mini.num_tokens * 4 * mini.embed_dim), 7, dtype=np.int32)
    r = csim.CSim(mini, profile("lean")).run(
        pack(qm, DEFAULT_TILING),
        to_patches(random_images(mini, 1, 0), mini),
        0,
        debug_stop=dp.tokens_stop_code(mini),
        output=out,
    )
    assert r.status == BAD_DEBUG_STOP and (out == 7).all()
