"""Float reference model: names, shapes, top-k rule, MoE paths, record, heads, init."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgemoe.errors import ConfigError
from edgemoe.models.config import ModelConfig, load_config
from edgemoe.models.heads import bilinear_upsample_np, light_head_np
from edgemoe.models.m3vit import M3ViT, init_weights, normalize, random_model, topk_mask

# float32 reorderings (sparse vs dense MoE, our ops vs a hand-written model).
FLOAT_REORDER_ATOL = 1e-5
# numpy head (float64 inside) vs torch head (float32).
HEAD_ATOL = 1e-5


@pytest.fixture(scope="module")
def mini() -> ModelConfig:
    return load_config("m3vit-mini")


@pytest.fixture(scope="module")
def model(mini: ModelConfig) -> M3ViT:
    return random_model(mini, seed=3, style="trained")


@pytest.fixture(scope="module")
def images(mini: ModelConfig) -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    return torch.randn(2, mini.in_chans, *mini.image_size, generator=g)


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    d, e, n = cfg.embed_dim, cfg.num_experts, cfg.num_tokens
    p, c = cfg.patch_size, cfg.in_chans
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embed.proj.weight": (d, c, p, p),
        "patch_embed.proj.bias": (d,),
        "cls_token": (1, 1, d),
        "pos_embed": (1, n, d),
    }
    for spec in cfg.task_specs:
        task, ch, head = spec.name, spec.channels, spec.head
        shapes[f"norms.{task}.weight"] = (d,)
        shapes[f"norms.{task}.bias"] = (d,)
        if head.kind == "linear":
            shapes[f"heads.{task}.weight"] = (ch, d)
            shapes[f"heads.{task}.bias"] = (ch,)
            continue
        # M3ViT's VisionTransformerUpHead: conv_0 … conv_{n-1}, a SyncBN after all but the last
        n, hid = (5, head.channels) if head.num_conv == 4 else (2, head.channels)
        for i in range(n):
            cin = d if i == 0 else hid
            cout = ch if i == n - 1 else hid
            k = 1 if i == n - 1 or (i == 0 and not head.conv3x3_conv1x1) else 3
            shapes[f"decoders.{task}.conv_{i}.weight"] = (cout, cin, k, k)
            shapes[f"decoders.{task}.conv_{i}.bias"] = (cout,)
            if i < n - 1:
                for p in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"decoders.{task}.syncbn_fc_{i}.{p}"] = (hid,)
    for i in range(cfg.depth):
        b = f"blocks.{i}"
        for ln in ("norm1", "norm2"):
            shapes[f"{b}.{ln}.weight"] = (d,)
            shapes[f"{b}.{ln}.bias"] = (d,)
        shapes[f"{b}.attn.qkv.weight"] = (3 * d, d)
        if cfg.qkv_bias:
            shapes[f"{b}.attn.qkv.bias"] = (3 * d,)
        shapes[f"{b}.attn.proj.weight"] = (d, d)
        shapes[f"{b}.attn.proj.bias"] = (d,)
        if i in cfg.moe_blocks:
            h = cfg.expert_hidden
            shapes[f"{b}.mlp.experts.htoh4.weight"] = (e, h, d)
            shapes[f"{b}.mlp.experts.htoh4.bias"] = (e, h)
            shapes[f"{b}.mlp.experts.h4toh.weight"] = (e, d, h)
            shapes[f"{b}.mlp.experts.h4toh.bias"] = (e, d)
            for task in cfg.task_names:
                shapes[f"{b}.mlp.gate.{task}.w_gate"] = (d, e)
        else:
            shapes[f"{b}.mlp.fc1.weight"] = (cfg.mlp_hidden, d)
            shapes[f"{b}.mlp.fc1.bias"] = (cfg.mlp_hidden,)
            shapes[f"{b}.mlp.fc2.weight"] = (d, cfg.mlp_hidden)
            shapes[f"{b}.mlp.fc2.bias"] = (d,)
    return shapes


@pytest.mark.parametrize("name", ["m3vit-mini", "m3vit-tiny-128x256"])
def test_parameter_names_and_shapes(name: str) -> None:
    cfg = load_config(name)
    sd = M3ViT(cfg).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected_shapes(cfg)
    assert all(v.dtype == torch.float32 for v in sd.values())


def test_qkv_bias_off_has_no_bias(mini: ModelConfig) -> None:
    cfg = mini.replace(qkv_bias=False)
    got = {k: tuple(v.shape) for k, v in M3ViT(cfg).state_dict().items()}
    assert got == expected_shapes(cfg)
    assert "blocks.0.attn.qkv.bias" not in got


# -- top-k ---------------------------------------------------------------


def test_topk_all_equal_takes_first_k() -> None:
    p = torch.full((3, 5, 8), 0.125)
    for k in range(1, 9):
        mask = topk_mask(p, k)
        expect = torch.zeros(8, dtype=torch.bool)
        expect[:k] = True
        assert (mask == expect).all()


@pytest.mark.parametrize(
    ("p", "k", "chosen"),
    [
        ([0.1, 0.4, 0.4, 0.1], 1, [1]),
        ([0.1, 0.4, 0.4, 0.1], 2, [1, 2]),
        ([0.1, 0.4, 0.4, 0.1], 3, [0, 1, 2]),
        ([0.3, 0.2, 0.3, 0.2], 3, [0, 1, 2]),
        ([0.2, 0.2, 0.2, 0.4], 2, [0, 3]),
        ([0.2, 0.3, 0.3, 0.3], 2, [1, 2]),
        ([0.2, 0.3, 0.3, 0.3], 1, [1]),
        ([0.5, 0.1, 0.3, 0.1], 1, [0]),
        ([0.5, 0.1, 0.3, 0.1], 4, [0, 1, 2, 3]),
        ([0.1, 0.1, 0.1, 0.7], 4, [0, 1, 2, 3]),
    ],
)
def test_topk_ties_go_to_lower_index(p: list[float], k: int, chosen: list[int]) -> None:
    mask = topk_mask(torch.tensor(p), k)
    assert mask.nonzero().flatten().tolist() == chosen


def test_topk_matches_sort_with_index_tiebreak() -> None:
    g = torch.Generator().manual_seed(0)
    # Few distinct values: plenty of ties.
    p = torch.randint(0, 4, (200, 6), generator=g).float()
    for k in (1, 2, 3, 6):
        mask = topk_mask(p, k)
        assert (mask.sum(-1) == k).all()
        for row, m in zip(p.tolist(), mask.tolist(), strict=True):
            order = sorted(range(6), key=lambda e, row=row: (-row[e], e))
            assert [e for e in range(6) if m[e]] == sorted(order[:k])


def test_topk_rejects_bad_k() -> None:
    with pytest.raises(ValueError):
        topk_mask(torch.zeros(4), 0)
    with pytest.raises(ValueError):
        topk_mask(torch.zeros(4), 5)


# -- forward -------------------------------------------------------------


def test_sparse_and_dense_moe_agree(model: M3ViT, images: torch.Tensor) -> None:
    for task in model.cfg.task_names:
        with torch.no_grad():
            sparse = model.backbone(images, task)
            model.moe_dense = True
            try:
                dense = model.backbone(images, task)
            finally:
                model.moe_dense = False
        torch.testing.assert_close(sparse, dense, atol=FLOAT_REORDER_ATOL, rtol=0)


def test_record_keys_and_shapes(model: M3ViT, images: torch.Tensor, mini: ModelConfig) -> None:
    record: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        out = model.backbone(images, "depth", record=record)
    b, n, d, e = images.shape[0], mini.num_tokens, mini.embed_dim, mini.num_experts
    expect = {"embed": (b, n, d)}
    for i in range(mini.depth):
        expect |= {
            f"block{i}.ln1": (b, n, d),
            f"block{i}.qkv": (b, n, 3 * d),
            f"block{i}.attn": (b, n, d),
            f"block{i}.proj": (b, n, d),
            f"block{i}.ln2": (b, n, d),
            f"block{i}.mlp": (b, n, d),
        }
        if mini.is_moe(i):
            expect |= {f"block{i}.gate": (b, n, e), f"block{i}.route": (b, n, e)}
    assert {k: tuple(v.shape) for k, v in record.items()} == expect
    for k, v in record.items():
        assert not v.requires_grad
        assert v.dtype == (torch.bool if k.endswith(".route") else torch.float32), k
    assert (record[f"block{mini.depth - 1}.mlp"] == out).all()
    assert (record["block1.route"].sum(-1) == mini.top_k).all()


def _manual_backbone(
    sd: dict[str, torch.Tensor], cfg: ModelConfig, images: torch.Tensor, task: str
) -> torch.Tensor:
    """M3ViT written out from the state dict, token by token where it matters."""
    d, p, nh = cfg.embed_dim, cfg.patch_size, cfg.num_heads
    hd = d // nh
    rows, cols = cfg.grid
    b = images.shape[0]
    # Patch (r, c) flattened channel-major, like the conv weight (D, C, p, p).
    patches = images.reshape(b, cfg.in_chans, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(b, rows * cols, cfg.in_chans * p * p)
    w = sd["patch_embed.proj.weight"].reshape(d, -1)
    tok = patches @ w.T + sd["patch_embed.proj.bias"]
    x = torch.cat([sd["cls_token"].expand(b, 1, d), tok], dim=1) + sd["pos_embed"]

    def ln(t: torch.Tensor, pre: str) -> torch.Tensor:
        mu = t.mean(-1, keepdim=True)
        var = ((t - mu) ** 2).mean(-1, keepdim=True)
        return (t - mu) / torch.sqrt(var + cfg.ln_eps) * sd[f"{pre}.weight"] + sd[f"{pre}.bias"]

    def gelu(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * t * (1.0 + torch.erf(t / math.sqrt(2.0)))

    for i in range(cfg.depth):
        pre = f"blocks.{i}"
        h = ln(x, f"{pre}.norm1")
        qkv = h @ sd[f"{pre}.attn.qkv.weight"].T + sd[f"{pre}.attn.qkv.bias"]
        heads = []
        for j in range(nh):
            q = qkv[..., j * hd : (j + 1) * hd]
            k = qkv[..., d + j * hd : d + (j + 1) * hd]
            v = qkv[..., 2 * d + j * hd : 2 * d + (j + 1) * hd]
            s = q @ k.transpose(1, 2) / math.sqrt(hd)
            s = torch.exp(s - s.max(-1, keepdim=True).values)
            heads.append((s / s.sum(-1, keepdim=True)) @ v)
        a = torch.cat(heads, dim=-1)
        x = x + a @ sd[f"{pre}.attn.proj.weight"].T + sd[f"{pre}.attn.proj.bias"]
        h = ln(x, f"{pre}.norm2")
        if i in cfg.moe_blocks:
            w1 = sd[f"{pre}.mlp.experts.htoh4.weight"]
            b1 = sd[f"{pre}.mlp.experts.htoh4.bias"]
            w2 = sd[f"{pre}.mlp.experts.h4toh.weight"]
            b2 = sd[f"{pre}.mlp.experts.h4toh.bias"]
            logits = h @ sd[f"{pre}.mlp.gate.{task}.w_gate"]
            prob = torch.softmax(logits, -1)
            y = torch.zeros_like(h)
            for bi in range(b):
                for t in range(h.shape[1]):
                    pt = prob[bi, t].tolist()
                    order = sorted(range(cfg.num_experts), key=lambda e, pt=pt: (-pt[e], e))
                    for e in order[: cfg.top_k]:
                        hidden = gelu(w1[e] @ h[bi, t] + b1[e])
                        y[bi, t] += prob[bi, t, e] * (w2[e] @ hidden + b2[e])
        else:
            hidden = gelu(h @ sd[f"{pre}.mlp.fc1.weight"].T + sd[f"{pre}.mlp.fc1.bias"])
            y = hidden @ sd[f"{pre}.mlp.fc2.weight"].T + sd[f"{pre}.mlp.fc2.bias"]
        x = x + y
    return x


@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_backbone_matches_manual_model(
    model: M3ViT, images: torch.Tensor, mini: ModelConfig, task: str
) -> None:
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        got = model.backbone(images, task)
    want = _manual_backbone(sd, mini, images, task)
    torch.testing.assert_close(got, want, atol=FLOAT_REORDER_ATOL, rtol=0)


def test_gates_differ_per_task(model: M3ViT, images: torch.Tensor) -> None:
    with torch.no_grad():
        a = model.backbone(images, "semseg")
        b = model.backbone(images, 1)
        c = model.backbone(images, "depth")
    assert (b == c).all()
    assert not torch.allclose(a, b)


def test_forward_shape_and_task_ids(model: M3ViT, images: torch.Tensor, mini: ModelConfig) -> None:
    with torch.no_grad():
        for tid, (task, ch) in enumerate(mini.tasks):
            out = model(images, task)
            assert out.shape == (images.shape[0], ch, *mini.image_size)
            assert (model(images, tid) == out).all()
    with pytest.raises(ConfigError, match="unknown task"):
        model(images, "normals")


def test_forward_rejects_wrong_image_shape(model: M3ViT) -> None:
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(1, 3, 64, 32), "semseg")


def test_tiny_forward_smoke() -> None:
    cfg = load_config("m3vit-tiny-128x256")
    m = random_model(cfg, seed=0)
    with torch.no_grad():
        out = m(torch.zeros(1, 3, *cfg.image_size), "semseg")
    assert out.shape == (1, 7, 128, 256)
    assert torch.isfinite(out).all()


# -- normalize, init -----------------------------------------------------


def test_normalize(mini: ModelConfig) -> None:
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(2, *mini.image_size, 3), dtype=np.uint8)
    got = normalize(u8, mini)
    assert got.dtype == torch.float32 and got.shape == (2, 3, *mini.image_size)
    mean = np.array(mini.pixel_mean).reshape(1, 3, 1, 1)
    std = np.array(mini.pixel_std).reshape(1, 3, 1, 1)
    want = (u8.transpose(0, 3, 1, 2) / 255.0 - mean) / std
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6, rtol=0)
    assert (normalize(torch.from_numpy(u8), mini) == got).all()
    assert (M3ViT(mini).normalize(u8[0]) == got[:1]).all()
    with pytest.raises(ValueError, match="uint8"):
        normalize(u8.astype(np.float32), mini)


def test_init_is_deterministic_and_seeded(mini: ModelConfig) -> None:
    torch.manual_seed(123)
    a = random_model(mini, seed=5, style="trained").state_dict()
    torch.manual_seed(456)
    b = random_model(mini, seed=5, style="trained").state_dict()
    c = random_model(mini, seed=6, style="trained").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)


def test_init_styles(mini: ModelConfig) -> None:
    m3 = random_model(mini, seed=0).state_dict()
    assert (m3["blocks.0.norm1.weight"] == 1).all() and (m3["norms.depth.bias"] == 0).all()
    assert (m3["blocks.1.mlp.experts.htoh4.bias"] == 0).all()
    assert (m3["heads.semseg.bias"] == 0).all()
    std = m3["blocks.1.mlp.experts.htoh4.weight"].std().item()
    assert 0.015 < std < 0.025
    assert m3["pos_embed"].abs().max() > 0 and m3["blocks.1.mlp.gate.depth.w_gate"].std() > 0.01
    tr = random_model(mini, seed=0, style="trained").state_dict()
    for k, v in tr.items():
        # Every parameter class leaves the constants (0, 1) of the 'm3vit' init.
        assert (v != 0).all() and (v != 1).all(), k
    with pytest.raises(ValueError, match="init style"):
        init_weights(M3ViT(mini), 0, style="xavier")  # type: ignore[arg-type]


# -- heads ---------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), [((2, 4), (32, 64)), ((3, 5), (7, 11)), ((4, 4), (4, 4))])
def test_bilinear_matches_torch(src: tuple[int, int], dst: tuple[int, int]) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, *src)).astype(np.float32)
    want = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=dst, mode="bilinear", align_corners=False
    ).numpy()
    np.testing.assert_allclose(bilinear_upsample_np(x, dst), want, atol=HEAD_ATOL, rtol=0)


def test_light_head_numpy_matches_torch(
    model: M3ViT, images: torch.Tensor, mini: ModelConfig
) -> None:
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    with torch.no_grad():
        tokens = model.backbone(images, "semseg")
        for task in mini.task_names:
            want = model.task_output(tokens, task).numpy()
            got = light_head_np(
                tokens.numpy(),
                sd[f"norms.{task}.weight"],
                sd[f"norms.{task}.bias"],
                sd[f"heads.{task}.weight"],
                sd[f"heads.{task}.bias"],
                mini,
            )
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=HEAD_ATOL, rtol=0)


def test_heads_import_without_torch() -> None:
    # The board runs the head in numpy; importing it must not pull in torch.
    code = "import sys, edgemoe.models.heads; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
