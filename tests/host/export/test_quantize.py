"""Export: constant folding and the saturation report."""

import dataclasses

import numpy as np
import pytest
import torch

from edgemoe.host.contracts.fixedpoint import Fmt
from edgemoe.host.contracts.images import random_images, to_patches
from edgemoe.host.export.quantize import LOG2E, QuantizationError, q_scale, quantize_model
from edgemoe.models.m3vit import normalize, random_model
from tests.conftest import cfg, profile


@pytest.fixture(scope="module")
def mini_model():
    return random_model(cfg("m3vit-mini"), 0, "trained")


def _state(m):
    return {k: v.detach().numpy() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("pname", ["edge-moe", "lean"])
def test_patch_embedding_folding(mini_model, pname):
    """Raw pixels through the folded weights = conv on normalised images (+ pos, cls)."""
    c, p = cfg("m3vit-mini"), profile(pname)
    qm = quantize_model(_state(mini_model), c, p)
    imgs = random_images(c, 2, 0)
    patches = to_patches(imgs, c).astype(np.float64) * p.pixel.lsb
    fw = qm.fmt("patch.w")
    w = fw.to_float(qm["patch.w"])
    tb = p.token_bias.to_float(qm["token_bias"])
    got = np.concatenate(
        [np.broadcast_to(tb[0], (2, 1, c.embed_dim)), patches @ w.T + tb[1:]], axis=1
    )
    with torch.no_grad():
        want = mini_model.embed(normalize(imgs, c)).double().numpy()
    # weight rounding only: half an LSB per weight over 768 inputs
    assert np.abs(got - want).max() < 768 * fw.lsb
    assert np.abs(got - want).mean() < 20 * fw.lsb


def test_q_scale_and_gate_folding(mini_model):
    c, p = cfg("m3vit-mini"), profile("edge-moe")
    qm = quantize_model(_state(mini_model), c, p)
    sd = _state(mini_model)
    D = c.embed_dim
    fq = qm.fmt("blocks.0.qkv.w")
    wq = fq.to_float(qm["blocks.0.qkv.w"])
    ref = sd["blocks.0.attn.qkv.weight"]
    assert np.abs(wq[:D] - ref[:D] * q_scale(c)).max() <= fq.lsb / 2
    assert np.abs(wq[D:] - ref[D:]).max() <= fq.lsb / 2
    b = c.moe_blocks[0]
    fg = qm.fmt(f"blocks.{b}.gate.depth.w")
    g = fg.to_float(qm[f"blocks.{b}.gate.depth.w"])
    assert np.abs(g - sd[f"blocks.{b}.mlp.gate.depth.w_gate"].T * LOG2E).max() <= fg.lsb / 2
    assert qm.report.saturated == 0
    assert set(qm.host_params) == {k for k in sd if k.startswith(("norms.", "heads."))}


def _compile_time_weights(p, fmt: str = "fixed<16,3>"):
    """``p`` with one binary point for every linear weight (a compile-time format)."""
    return dataclasses.replace(p, formats={**p.formats, "weight": Fmt.parse(fmt)})


def test_saturation_is_reported_not_silent(mini_model):
    c, p = cfg("m3vit-mini"), _compile_time_weights(profile("lean"))
    sd = _state(mini_model)
    sd["blocks.2.mlp.fc1.weight"] = sd["blocks.2.mlp.fc1.weight"].copy()
    sd["blocks.2.mlp.fc1.weight"][0, :5] = [5.0, -9.0, 4.5, 0.1, 3.9]  # range of <16,3> is +-4
    qm = quantize_model(sd, c, p)
    bad = qm.report.saturated_tensors()
    assert [t.name for t in bad] == ["blocks.2.fc1.w"]
    assert bad[0].saturated == 3
    assert bad[0].worst_overflow == pytest.approx(9.0 - 4.0)
    assert qm["blocks.2.fc1.w"][0, :3].tolist() == [
        p.weight.max_raw,
        p.weight.min_raw,
        p.weight.max_raw,
    ]
    assert "blocks.2.fc1.w" in qm.report.table()
    # a compile-time format that is not a weight's: LayerNorm gamma beyond fixed<16,5>
    sd["blocks.1.norm2.weight"] = sd["blocks.1.norm2.weight"].copy()
    sd["blocks.1.norm2.weight"][3] = 40.0
    qm = quantize_model(sd, c, profile("lean"))
    bad = qm.report.saturated_tensors()
    assert [t.name for t in bad] == ["blocks.1.ln2.g"]
    assert bad[0].saturated == 1 and bad[0].worst_overflow == pytest.approx(40.0 - 16.0, abs=1e-3)


def test_per_tensor_weights_never_saturate_and_keep_their_resolution(mini_model):
    """fixed<16,*>: each tensor (each expert's too) the fewest integer bits that hold it."""
    c, p = cfg("m3vit-mini"), profile("lean")
    sd = _state(mini_model)
    sd["blocks.2.mlp.fc1.weight"] = sd["blocks.2.mlp.fc1.weight"].copy()
    sd["blocks.2.mlp.fc1.weight"][0, :5] = [5.0, -9.0, 4.5, 0.1, 3.9]
    qm = quantize_model(sd, c, p)
    assert qm.report.saturated == 0
    assert str(qm.fmt("blocks.2.fc1.w")) == "fixed<16,5>"  # -9 needs 5 integer bits
    for t in qm.report.tensors:
        if ".ln" in t.name or t.name == "token_bias":
            continue  # compile-time formats
        f = Fmt.parse(t.fmt)
        assert t.max_abs <= f.max_value + f.lsb / 2, t
        # one integer bit fewer would not hold it (a binary point of its own)
        tighter = Fmt(f.width, f.int_bits - 1)
        assert tighter.quantize(np.asarray([t.max_abs, -t.max_abs]))[1] > 0 or t.max_abs == 0, t
    b = c.moe_blocks[0]
    fmts = {str(qm.fmt(f"blocks.{b}.experts.fc2.w", e)) for e in range(c.num_experts)}
    with torch.no_grad():
        scaled = {k: v.clone() for k, v in mini_model.state_dict().items()}
        scaled[f"blocks.{b}.mlp.experts.h4toh.weight"][1] *= 64.0
    qm64 = quantize_model(scaled, c, p)
    for e in range(c.num_experts):
        f0, f1 = qm.fmt(f"blocks.{b}.experts.fc2.w", e), qm64.fmt(f"blocks.{b}.experts.fc2.w", e)
        assert f1.int_bits == f0.int_bits + (6 if e == 1 else 0), (e, f0, f1)
        assert np.array_equal(
            qm64[f"blocks.{b}.experts.fc2.w"][e], qm[f"blocks.{b}.experts.fc2.w"][e]
        )
    assert fmts


def test_nan_inf_rejected(mini_model):
    c, p = cfg("m3vit-mini"), profile("lean")
    for bad in (np.nan, np.inf):
        sd = _state(mini_model)
        sd["blocks.1.attn.proj.weight"] = sd["blocks.1.attn.proj.weight"].copy()
        sd["blocks.1.attn.proj.weight"][2, 3] = bad
        with pytest.raises(QuantizationError, match="blocks.1.attn.proj.weight.*NaN/Inf"):
            quantize_model(sd, c, p)


def test_k_bias_is_dropped_and_the_float_model_does_not_change(mini_model):
    """q.b_k is the same for every key of a query row: the softmax cancels it exactly."""
    c, p = cfg("m3vit-mini"), profile("lean")
    sd = _state(mini_model)
    D = c.embed_dim
    qm = quantize_model(sd, c, p)
    for i in range(c.depth):
        assert (qm[f"blocks.{i}.qkv.b"][D : 2 * D] == 0).all()
        assert np.array_equal(qm.k_bias[i], sd[f"blocks.{i}.attn.qkv.bias"][D : 2 * D])
    imgs = normalize(random_images(c, 2, 3), c)
    dropped = random_model(c, 0, "trained")
    with torch.no_grad():
        for blk in dropped.blocks:
            blk.attn.qkv.bias[D : 2 * D] = 50.0 * torch.randn(D)  # any K bias at all
        want = mini_model.backbone(imgs, "semseg").double()
        got = dropped.backbone(imgs, "semseg").double()
    assert torch.allclose(got, want, rtol=0, atol=1e-4)
