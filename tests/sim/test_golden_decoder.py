"""The integer task decoder (golden's ``decode``): its units against float, its formats and
accumulators, and its fidelity on trained weights (the mini with M3ViT's ``pup`` head).

The mini-pup weights: ``models/checkpoints/m3vit-mini-pup.safetensors`` (the shipped mini's
backbone, its decoders trained on procedural scenes; its record beside it).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.accumulators import accumulator_bits
from edgemoe.host.driver.backends import Workload
from edgemoe.host.export.calibrate import TARGET_BITS, calibrate
from edgemoe.host.export.quantize import QuantizationError, quantize_model
from edgemoe.models import DEFAULT_CONFIG
from edgemoe.models.checkpoint import load_checkpoint
from edgemoe.models.config import HeadSpec
from edgemoe.models.data import ProceduralScenes
from edgemoe.models.heads import fold_decoder, host_params, pup_front_np
from edgemoe.models.m3vit import M3ViT, random_model
from edgemoe.models.shipped import shipped_checkpoint
from edgemoe.sim import units
from edgemoe.sim.decoder import measure_decoder
from edgemoe.sim.golden import EXACT, Golden, im2col, int_matmul
from tests.conftest import cfg, profile

MINI_PUP = "m3vit-mini-pup"
PROFILES = ("lean", "edge-moe")
#: Held-out scenes of the fidelity test (split ``val``, data seed 0: what eval scores).
SCENES = 8
#: The decoder's logits against the float decoder on the same tokens (rel-RMS), per
#: profile (measured: 1.3e-4 and 7.8e-5).
LOGITS_REL_RMS = {"lean": 1e-3, "edge-moe": 5e-4}


@functools.cache
def mini_pup() -> M3ViT:
    path = shipped_checkpoint(MINI_PUP)
    assert path is not None, f"the {MINI_PUP} checkpoint is missing"
    model = M3ViT(cfg(MINI_PUP), seed=0)
    load_checkpoint(model, path)
    return model.eval()


@functools.cache
def workload(pname: str) -> Workload:
    return Workload(cfg(MINI_PUP), profile(pname), mini_pup())


# -- the units ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (2, 4), (5, 7)])
def test_upsample_stencil_is_torch_bilinear_x2(shape):
    """9/16, 3/16, 3/16, 1/16 with edge clamping = F.interpolate(x2, align_corners=False),
    in real arithmetic (float64, no rounding)."""
    g = torch.Generator().manual_seed(shape[0] * 10 + shape[1])
    x = torch.randn(2, 3, *shape, generator=g, dtype=torch.float64)
    want = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    # the stencil, written out: the unit's formula without its rounding
    xs = x.numpy().transpose(0, 2, 3, 1)
    h, w = shape
    out = np.empty((2, 2 * h, 2 * w, 3))
    for i in range(h):
        for j in range(w):
            for a in (0, 1):
                for b in (0, 1):
                    i2 = min(max(i + (1 if a else -1), 0), h - 1)
                    j2 = min(max(j + (1 if b else -1), 0), w - 1)
                    s = 9 * xs[:, i, j] + 3 * xs[:, i2, j] + 3 * xs[:, i, j2] + xs[:, i2, j2]
                    out[:, 2 * i + a, 2 * j + b] = s / 16
    np.testing.assert_allclose(out.transpose(0, 3, 1, 2), want.numpy(), rtol=0, atol=1e-14)


def test_upsample_unit_rounds_once_half_up_and_stays_in_range():
    rng = np.random.default_rng(3)
    x = rng.integers(-(1 << 19), 1 << 19, size=(2, 5, 6, 4))
    y = units.upsample2x(x)
    # exact: the float64 stencil of integers below 2**24 is exact, then floor(v + 1/2)
    xf = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float64))
    exact = F.interpolate(xf, scale_factor=2, mode="bilinear", align_corners=False).numpy()
    want = np.floor(exact * 16 + 8) // 16  # (16 v + 8) >> 4, v a multiple of 1/16
    assert np.array_equal(y.transpose(0, 3, 1, 2), want.astype(np.int64))
    assert y.min() >= x.min() and y.max() <= x.max()  # a convex combination: no saturation
    # ties round up: (0, 0, 8, 8)/16 of [0, 1] -> 0.5 -> 1; -0.5 -> 0
    tie = np.array([0, 2]).reshape(1, 1, 2, 1)
    assert units.upsample2x(tie)[0, 0, :, 0].tolist() == [0, 1, 2, 2]
    assert units.upsample2x(-tie)[0, 0, :, 0].tolist() == [0, 0, -1, -2]


@pytest.mark.parametrize("k", [1, 3])
def test_conv_is_a_linear_unit_call_on_im2col_rows(k):
    """The rows [ky][kx][c_in] and weights (C_out, k*k*C_in) of the same order give torch's
    zero-padded convolution exactly."""
    rng = np.random.default_rng(k)
    x = rng.integers(-(1 << 15), 1 << 15, size=(4, 6, 5))
    w = rng.integers(-(1 << 15), 1 << 15, size=(3, 5, k, k))
    rows = im2col(x, k)
    acc = int_matmul(rows, w.transpose(0, 2, 3, 1).reshape(3, -1).T).reshape(4, 6, 3)
    ref = F.conv2d(
        torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float64)),
        torch.from_numpy(w.astype(np.float64)),
        padding=k // 2,
    )
    assert np.array_equal(acc, ref[0].numpy().transpose(1, 2, 0).astype(np.int64))
    band = im2col(x, k, 1, 3)  # a band of output rows: the same rows
    assert np.array_equal(band, rows[6 : 3 * 6])


#: M3ViT's two-convolution heads (8 channels): 2/1, 2/2 (the square resize), 2/1 with a
#: 1x1 conv_0
TWO_CONV_HEADS = [
    HeadSpec("pup", 2, 1, True, 8),
    HeadSpec("pup", 2, 2, True, 8),
    HeadSpec("pup", 2, 1, False, 8),
]
TWO_CONV_IDS = ["2x1", "2x2-square", "2x1-conv1x1"]


# -- the split between the datapath and the host ------------------------------------------


@pytest.mark.parametrize("head", TWO_CONV_HEADS, ids=TWO_CONV_IDS)
def test_classifier_commutes_with_the_hosts_resizes(head):
    """conv_0 -> ReLU -> conv_1 at H/16 and then the resizes equals M3ViT's order (resize,
    then the 1x1 classifier): a per-pixel affine map commutes with bilinear weights that sum
    to 1. Float64 against the torch PupDecoder."""
    base = cfg("m3vit-mini")
    c = dataclasses.replace(
        base, task_specs=tuple(dataclasses.replace(s, head=head) for s in base.task_specs)
    )
    model = random_model(c, 2, "trained").double()
    g = torch.Generator().manual_seed(4)
    grid = torch.randn(2, c.embed_dim, *c.grid, generator=g, dtype=torch.float64)
    dec = model.decoders["semseg"]
    with torch.no_grad():
        want = dec(grid)
        x = dec._block(grid, 0)
        x = dec.conv_1(x)  # the datapath's last step, at H/16
        if head.num_upsample_layer == 2:
            side = x.shape[-1] * 4
            x = F.interpolate(x, size=side, mode="bilinear", align_corners=False)
        x = F.interpolate(x, size=c.image_size, mode="bilinear", align_corners=False)
        got = F.interpolate(x, size=c.image_size, mode="bilinear", align_corners=False)
    assert want.shape == got.shape
    assert float((got - want).abs().max()) <= 1e-12 * float(want.abs().max())


# -- formats and accumulators --------------------------------------------------------------


def tiny_pup():
    base = cfg("m3vit-tiny-128x256")
    head = HeadSpec("pup", 4, 4, True, 256)
    return dataclasses.replace(
        base, task_specs=tuple(dataclasses.replace(s, head=head) for s in base.task_specs)
    )


@pytest.mark.parametrize("pname", PROFILES)
def test_decoder_accumulators_fit(pname):
    """M3ViT's Cityscapes head on the tiny: K = 9*192 (conv_0 on act) and 9*256 (dec_feat);
    lean within one DSP48E2's 48-bit adder, and every product exact through float64 BLAS
    (the 16-bit split where the operands are wide)."""
    c, p = tiny_pup(), profile(pname)
    bits = accumulator_bits(c, p)
    limit = 48 if pname == "lean" else 64
    assert max(bits[k] for k in ("dec_conv_first", "dec_conv", "dec_upsample")) <= limit, bits
    wmax = 1 << (p.weight.width - 1)
    for fin, k in ((p.act, 9 * 192), (p.dec_feat, 9 * 256)):
        xmax = 1 << (fin.width - 1)
        assert xmax * wmax * k < EXACT or (
            (1 << 16) * wmax * k < EXACT and (xmax >> 16) * wmax * k < EXACT
        )
    assert accumulator_bits(cfg("m3vit-mini"), p).keys().isdisjoint({"dec_conv"})


def test_weights_laid_out_as_im2col_rows():
    wl = workload("lean")
    qm, c = wl.quantized, wl.cfg
    fused = fold_decoder(wl.state, "semseg", c, np.float64)
    for i in range(c.task_spec("semseg").head.convs):
        raw, fmt = qm.dec(f"decoders.semseg.conv_{i}.w")
        w = fused[f"decoders.semseg.fused_{i}.weight"]
        assert raw.shape == (w.shape[0], w.shape[1] * w.shape[2] * w.shape[3])
        back = fmt.to_float(raw).reshape(w.shape[0], w.shape[2], w.shape[3], w.shape[1])
        assert np.abs(back.transpose(0, 3, 1, 2) - w).max() <= fmt.lsb / 2
    assert qm.dec_formats["decoders.semseg.norm.g"] == wl.profile.ln
    assert not set(qm.dec_tensors) & set(qm.tensors)  # the bundle's tensors are unchanged


# -- the decoder call -------------------------------------------------------------------


def test_stages_named_recorded_and_close_to_float():
    wl = workload("edge-moe")
    c, g = wl.cfg, Golden(wl.quantized)
    images = ProceduralScenes(c).batch("val", np.arange(2)).images
    from edgemoe.host.contracts.images import to_patches

    raw = g.run(to_patches(images, c), "depth").tokens
    d = g.decode(raw, "depth", record=True)
    names = g.decode_stages("depth")
    assert list(d.stages) == names
    assert names == [
        "dec.norm",
        "dec.conv_0",
        "dec.up_1",
        "dec.conv_1",
        "dec.up_2",
        "dec.conv_2",
        "dec.up_3",
        "dec.conv_3",
        "dec.logits",
    ]
    rows, cols = c.grid
    assert d.logits.shape == (2, 8 * rows, 8 * cols, 1)  # H/2 x W/2
    assert np.array_equal(d.stages["dec.logits"], d.logits)
    hp = host_params(wl.state, c)
    spec = c.task_spec("depth").head
    fused = [
        (hp[f"decoders.depth.fused_{i}.weight"], hp[f"decoders.depth.fused_{i}.bias"])
        for i in range(spec.convs)
    ]
    rec: dict = {}
    pup_front_np(
        wl.profile.act.to_float(raw),
        hp["norms.depth.weight"],
        hp["norms.depth.bias"],
        fused,
        spec,
        c,
        rec,
    )
    assert list(rec) == names
    for name in names:
        got = g.stage_to_float(name, d.stages[name])
        ref = rec[name]
        err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert err < 2e-3, (name, err)
        if name != "dec.norm":
            assert d.stages[name].min() >= (0 if name != "dec.logits" else -(1 << 40))


def test_decode_refuses_what_the_datapath_cannot_do():
    mini = Workload(cfg("m3vit-mini"), profile("lean"), random_model(cfg("m3vit-mini"), 0))
    tokens = np.zeros((1, mini.cfg.num_tokens, mini.cfg.embed_dim), np.int64)
    with pytest.raises(ConfigError, match="pup heads only") as e:
        Golden(mini.quantized).decode(tokens, "semseg")
    assert "\n" not in str(e.value)
    c = cfg(MINI_PUP)
    head = dataclasses.replace(c.task_spec("semseg").head, align_corners=True)
    aligned = dataclasses.replace(
        c, task_specs=tuple(dataclasses.replace(s, head=head) for s in c.task_specs)
    )
    qm = quantize_model(workload("lean").state, aligned, profile("lean"))
    with pytest.raises(ConfigError, match="align_corners"):
        Golden(qm).decode(tokens[:, : aligned.num_tokens], "semseg")
    with pytest.raises(QuantizationError, match="only a pup head has a decoder"):
        mini.quantized.dec("decoders.semseg.conv_0.w")


@pytest.mark.parametrize("pname", PROFILES)
def test_decoder_fidelity_on_trained_weights(pname):
    """Task metrics through the integer decoder within the profile's budget, against torch
    (end to end) and against the float host decoder on the same tokens; zero saturation."""
    wl = workload(pname)
    batch = ProceduralScenes(wl.cfg).batch("val", np.arange(SCENES))
    budget = wl.profile.budgets["task_metric_delta"]
    for task in wl.cfg.task_names:
        m = measure_decoder(wl, batch.images, task, batch.labels[task])
        print(pname, m.to_dict())
        assert m.delta_torch <= budget and m.delta_host <= budget, m
        assert m.logits_rel_rms <= LOGITS_REL_RMS[pname], m
        assert m.saturations == 0, m
        # trained: the outputs mean something (not a constant map)
        assert (m.torch > 0.3) if m.metric == "miou" else (m.torch < 0.75), m


@pytest.mark.parametrize("pname", PROFILES)
def test_calibration_sizes_the_decoder_formats(pname):
    """Every decoder quantity is measured, in its class, with >= 2 bits of headroom."""
    wl = workload(pname)
    images = ProceduralScenes(wl.cfg).batch("val", np.arange(4)).images
    cal = calibrate(wl.model, wl.cfg, wl.profile, images, wl.quantized.report)
    dec = {q.name: q for q in cal.quantities if q.name.startswith("dec.")}
    for task in wl.cfg.task_names:
        for stage in Golden(wl.quantized).decode_stages(task):
            q = dec[stage.replace("dec.", f"dec.{task}.", 1)]
            want = {"dec.norm": "act", "dec.logits": "dec_out"}.get(stage, "dec_feat")
            assert q.cls == want and q.saturated == 0, q
            assert q.headroom_bits >= TARGET_BITS, q
    classes = {q.name: q.cls for q in cal.scaled + cal.quantities}
    assert classes["decoders.depth.conv_3.w"] == "weight"
    assert classes["decoders.depth.conv_3.b"] == "bias"
    assert classes["decoders.depth.norm.g"] == "ln"


@pytest.mark.slow
@pytest.mark.parametrize("pname", PROFILES)
def test_tiny_decoder_fidelity(pname):
    """The shipped tiny with M3ViT's Cityscapes head (6.4 GMAC per task-image): budgets on
    a held-out scene per task, zero saturation (docs/numerics.md has 8 scenes' figures)."""
    c = cfg(DEFAULT_CONFIG)
    path = shipped_checkpoint(DEFAULT_CONFIG)
    if path is None or any(s.head.kind != "pup" for s in c.task_specs):
        pytest.skip(f"the shipped {DEFAULT_CONFIG} has no pup head yet")
    model = M3ViT(c, seed=0)
    load_checkpoint(model, path)
    wl = Workload(c, profile(pname), model.eval())
    batch = ProceduralScenes(c).batch("val", np.arange(1))
    budget = wl.profile.budgets["task_metric_delta"]
    for task in c.task_names:
        m = measure_decoder(wl, batch.images, task, batch.labels[task])
        print(pname, m.to_dict())
        assert m.delta_torch <= budget and m.delta_host <= budget, m
        assert m.logits_rel_rms <= LOGITS_REL_RMS[pname] and m.saturations == 0, m


@pytest.mark.parametrize("head", TWO_CONV_HEADS, ids=TWO_CONV_IDS)
def test_two_convolution_heads_decode_at_the_grid(head):
    """conv_0 -> ReLU -> the 1x1 classifier at H/16 x W/16; the host's resizes finish it,
    matching the torch decoder (random trained-style weights, lean)."""
    from edgemoe.host.contracts.images import scene_images, to_patches
    from edgemoe.models.heads import pup_tail_np

    base = cfg("m3vit-mini")
    c = dataclasses.replace(
        base, task_specs=tuple(dataclasses.replace(s, head=head) for s in base.task_specs)
    )
    model = random_model(c, 6, "trained")
    wl = Workload(c, profile("lean"), model)
    g = Golden(wl.quantized)
    images = scene_images(c, 2, 0)
    raw = g.run(to_patches(images, c), "semseg").tokens
    d = g.decode(raw, "semseg", record=True)
    assert list(d.stages) == ["dec.norm", "dec.conv_0", "dec.logits"]
    assert d.logits.shape == (2, *c.grid, 7)
    with torch.no_grad():
        ref = model.task_output(
            torch.from_numpy(wl.profile.act.to_float(raw)).float(), "semseg"
        ).numpy()
    out = pup_tail_np(g.logits_to_float(d.logits), head, c)
    assert out.shape == ref.shape
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 2e-3


@pytest.mark.parametrize("pname", PROFILES)
def test_decoder_from_the_bundle_equals_the_quantized_models(pname):
    """Bundle format 4 carries the decoders: golden on the model read back from the
    kernel image decodes every stage exactly as on the quantized model."""
    from edgemoe.host.contracts.tiling import Tiling
    from edgemoe.host.export.bundle import pack, unpack_model

    wl = workload(pname)
    qm, t = wl.quantized, Tiling(24, 20, 4)
    back = unpack_model(pack(qm, t), qm.cfg, qm.profile, t)
    rng = np.random.default_rng(1)
    hi = 1 << (qm.profile.act.width - 2)
    tokens = rng.integers(-hi, hi, (2, qm.cfg.num_tokens, qm.cfg.embed_dim))
    for task in qm.cfg.task_names:
        want = Golden(qm).decode(tokens, task, record=True)
        got = Golden(back).decode(tokens, task, record=True)
        assert (got.logits == want.logits).all()
        assert got.stages.keys() == want.stages.keys()
        assert all((got.stages[k] == want.stages[k]).all() for k in want.stages)
