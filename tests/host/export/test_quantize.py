"""Export: constant folding and the saturation report."""

import numpy as np
import pytest
import torch

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
    w = p.patch_weight.to_float(qm["patch.w"])
    tb = p.token_bias.to_float(qm["token_bias"])
    got = np.concatenate(
        [np.broadcast_to(tb[0], (2, 1, c.embed_dim)), patches @ w.T + tb[1:]], axis=1
    )
    with torch.no_grad():
        want = mini_model.embed(normalize(imgs, c)).double().numpy()
    # weight rounding only: half an LSB per weight over 768 inputs
    assert np.abs(got - want).max() < 768 * p.patch_weight.lsb
    assert np.abs(got - want).mean() < 20 * p.patch_weight.lsb


def test_q_scale_and_gate_folding(mini_model):
    c, p = cfg("m3vit-mini"), profile("edge-moe")
    qm = quantize_model(_state(mini_model), c, p)
    sd = _state(mini_model)
    D = c.embed_dim
    wq = p.weight.to_float(qm["blocks.0.qkv.w"])
    ref = sd["blocks.0.attn.qkv.weight"]
    assert np.abs(wq[:D] - ref[:D] * q_scale(c)).max() <= p.weight.lsb / 2
    assert np.abs(wq[D:] - ref[D:]).max() <= p.weight.lsb / 2
    b = c.moe_blocks[0]
    g = p.gate_weight.to_float(qm[f"blocks.{b}.gate.depth.w"])
    assert np.abs(g - sd[f"blocks.{b}.mlp.gate.depth.w_gate"].T * LOG2E).max() <= p.weight.lsb / 2
    assert qm.report.saturated == 0
    assert set(qm.host_params) == {k for k in sd if k.startswith(("norms.", "heads."))}


def test_saturation_is_reported_not_silent(mini_model):
    c, p = cfg("m3vit-mini"), profile("lean")
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
