"""M3ViT's task decoders: config kinds, checkpoint loading, torch and numpy against M3ViT.

The reference below is written here from the semantics of M3ViT's
``VisionTransformerUpHead`` in eval mode (no third-party code): LayerNorm (eps
1e-6), CLS dropped, tokens to the ``(D, H/16, W/16)`` grid, then per variant

- ``num_conv 4 / num_upsample_layer 4``: (conv 3x3 → BN → ReLU → bilinear x2) x3,
  conv 3x3 → BN → ReLU, conv 1x1 → bilinear x2;
- ``2 / 1``: conv (3x3, or 1x1 without ``conv3x3_conv1x1``) → BN → ReLU → conv 1x1
  → bilinear to the image;
- ``2 / 2``: as ``2 / 1`` with a bilinear resize to a *square* ``4·w`` map between
  the ReLU and the 1x1 conv (M3ViT passes one integer as the size);

with the config's ``align_corners``, BN eps 1e-5 on running statistics; then
``MultiTaskModel``'s bilinear resize to the input (align_corners false).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgemoe.errors import CheckpointError, ConfigError
from edgemoe.models.checkpoint import load_checkpoint_result
from edgemoe.models.config import HeadSpec, ModelConfig, _from_dict, load_config
from edgemoe.models.heads import fold_decoder, host_param_names, host_params, task_head_np
from edgemoe.models.m3vit import M3ViT, random_model

CH = 16  # hidden width of the test decoders (M3ViT: 256)
VARIANTS = {
    "4x4": HeadSpec("pup", 4, 4, True, CH, False),
    "2x1": HeadSpec("pup", 2, 1, True, CH, False),
    "2x2-square": HeadSpec("pup", 2, 2, True, CH, False),
    "2x1-conv1x1": HeadSpec("pup", 2, 1, False, CH, False),
    "4x4-align": HeadSpec("pup", 4, 4, True, CH, True),
}


def pup_config(head: HeadSpec) -> ModelConfig:
    base = load_config("m3vit-mini")
    specs = tuple(dataclasses.replace(s, head=head) for s in base.task_specs)
    return dataclasses.replace(base, task_specs=specs)


def m3vit_checkpoint(cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """An M3ViT-layout state dict: ``module.backbone.*`` and ``module.decoders.{t}.*``.

    The decoders hold M3ViT's conv and SyncBN tensors (with ``num_batches_tracked``),
    the training-only ``output_level_*`` and a ``tam_model``; values are random.
    """
    g = torch.Generator().manual_seed(seed)
    model = random_model(cfg, seed, "trained")
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        if k.startswith(("norms.", "decoders.", "heads.")):
            continue
        out[f"module.backbone.{k}"] = v.clone()
    d = cfg.embed_dim
    for s in cfg.task_specs:
        h = s.head
        pre = f"module.decoders.{s.name}"
        out[f"{pre}.norm.weight"] = 1 + 0.1 * torch.randn(d, generator=g)
        out[f"{pre}.norm.bias"] = 0.1 * torch.randn(d, generator=g)
        n = 5 if h.num_conv == 4 else 2
        for i in range(n):
            cin = d if i == 0 else h.channels
            cout = s.channels if i == n - 1 else h.channels
            k = 1 if i == n - 1 or (i == 0 and not h.conv3x3_conv1x1) else 3
            scale = (cin * k * k) ** -0.5
            out[f"{pre}.conv_{i}.weight"] = scale * torch.randn(cout, cin, k, k, generator=g)
            out[f"{pre}.conv_{i}.bias"] = 0.1 * torch.randn(cout, generator=g)
            if i < n - 1:
                bn = f"{pre}.syncbn_fc_{i}"
                out[f"{bn}.weight"] = 1 + 0.2 * torch.randn(cout, generator=g)
                out[f"{bn}.bias"] = 0.2 * torch.randn(cout, generator=g)
                out[f"{bn}.running_mean"] = 0.3 * torch.randn(cout, generator=g)
                out[f"{bn}.running_var"] = 0.5 + torch.rand(cout, generator=g)
                out[f"{bn}.num_batches_tracked"] = torch.tensor(1000)
        if h.num_conv == 4:
            for lvl in range(3):
                out[f"{pre}.output_level_{lvl}.weight"] = torch.ones(s.channels, h.channels, 1, 1)
    out["module.tam_model.fc.weight"] = torch.ones(4, 4)
    return out


def reference(tokens: torch.Tensor, ck: dict, task: str, cfg: ModelConfig) -> torch.Tensor:
    """M3ViT's decoder in eval mode and the final resize, from the checkpoint's tensors."""
    h = cfg.task_spec(task).head
    pre = f"module.decoders.{task}"
    ac = h.align_corners

    def conv(x, i):
        w = ck[f"{pre}.conv_{i}.weight"]
        return F.conv2d(x, w, ck[f"{pre}.conv_{i}.bias"], padding=w.shape[-1] // 2)

    def bn_relu(x, i):
        bn = f"{pre}.syncbn_fc_{i}"
        m, v = ck[f"{bn}.running_mean"], ck[f"{bn}.running_var"]
        y = (x - m[:, None, None]) / torch.sqrt(v[:, None, None] + 1e-5)
        return F.relu(y * ck[f"{bn}.weight"][:, None, None] + ck[f"{bn}.bias"][:, None, None])

    def up2(x):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=ac)

    x = tokens[:, 1:]
    x = F.layer_norm(x, (x.shape[-1],), ck[f"{pre}.norm.weight"], ck[f"{pre}.norm.bias"], 1e-6)
    rows, cols = cfg.grid
    x = x.transpose(1, 2).reshape(x.shape[0], -1, rows, cols)
    if h.num_conv == 4:
        x = up2(bn_relu(conv(x, 0), 0))
        x = up2(bn_relu(conv(x, 1), 1))
        x = up2(bn_relu(conv(x, 2), 2))
        x = bn_relu(conv(x, 3), 3)
        x = up2(conv(x, 4))
    else:
        x = bn_relu(conv(x, 0), 0)
        if h.num_upsample_layer == 2:
            x = F.interpolate(x, size=(4 * cols, 4 * cols), mode="bilinear", align_corners=ac)
        x = F.interpolate(conv(x, 1), size=cfg.image_size, mode="bilinear", align_corners=ac)
    return F.interpolate(x, size=cfg.image_size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_decoder_matches_m3vit_and_numpy_matches_torch(variant: str) -> None:
    cfg = pup_config(VARIANTS[variant])
    ck = m3vit_checkpoint(cfg, seed=5)
    model = M3ViT(cfg, seed=1)
    result = load_checkpoint_result(model, {"state_dict": ck, "epoch": 3})
    assert result.untrained == ()
    ignored = result.notices[0]
    assert "tam_model*" in ignored and "num_batches_tracked" in ignored
    if VARIANTS[variant].num_conv == 4:
        assert "decoders.semseg.output_level_* (3 tensors)" in ignored
    model.eval()
    g = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, *cfg.image_size, generator=g)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    folded = host_params(state, cfg)
    assert sorted(folded) == sorted(host_param_names(cfg))
    for task in cfg.task_names:
        with torch.no_grad():
            out = model(images, task)
            tokens = model.backbone(images, task)
            ref = reference(tokens, ck, task, cfg)
        assert out.shape == (2, cfg.task_channels(task), *cfg.image_size)
        scale = float(ref.abs().max())
        assert scale > 0.1
        err = float((out - ref).abs().max())
        assert err <= 1e-5 * scale, (variant, task, err, scale)
        for params in (folded, state):  # the bundle's folded tensors, or a raw state dict
            host = task_head_np(tokens.numpy(), params, task, cfg)
            assert host.dtype == np.float32
            diff = float(np.abs(host - out.numpy()).max())
            assert diff <= 1e-4 * scale, (variant, task, diff, scale)


def test_fold_matches_conv_then_batch_norm() -> None:
    cfg = pup_config(VARIANTS["2x1"])
    state = {k: v.numpy() for k, v in random_model(cfg, 4, "trained").state_dict().items()}
    fused = fold_decoder(state, "semseg", cfg)
    x = torch.randn(1, cfg.embed_dim, 3, 5)
    pre = "decoders.semseg."
    t = {k: torch.from_numpy(v) for k, v in state.items()}
    y = F.conv2d(x, t[pre + "conv_0.weight"], t[pre + "conv_0.bias"], padding=1)
    y = F.batch_norm(
        y,
        t[pre + "syncbn_fc_0.running_mean"],
        t[pre + "syncbn_fc_0.running_var"],
        t[pre + "syncbn_fc_0.weight"],
        t[pre + "syncbn_fc_0.bias"],
        eps=1e-5,
    )
    z = F.conv2d(
        x,
        torch.from_numpy(fused[pre + "fused_0.weight"]),
        torch.from_numpy(fused[pre + "fused_0.bias"]),
        padding=1,
    )
    assert float((y - z).abs().max()) <= 1e-5 * float(y.abs().max())


def _yaml_cfg(head: object) -> dict:
    d = load_config("m3vit-mini").to_dict()
    d["tasks"]["semseg"]["head"] = head
    return d


def test_config_head_kinds() -> None:
    cfg = _from_dict(_yaml_cfg({"kind": "pup", "channels": 32}), "t")
    assert cfg.task_spec("semseg").head == HeadSpec("pup", 4, 4, True, 32, False)
    assert cfg.task_spec("depth").head.kind == "linear"
    again = _from_dict(cfg.to_dict(), "again")
    assert again == cfg
    assert _from_dict(_yaml_cfg("linear"), "t").task_spec("semseg").head == HeadSpec()
    # a linear head is not written out: configs without heads keep their dict (and hash)
    assert "head" not in load_config("m3vit-mini").to_dict()["tasks"]["semseg"]


@pytest.mark.parametrize(
    ("head", "needles"),
    [
        ({"kind": "pup", "num_conv": 3}, ("num_conv 3", "num_upsample_layer 4", "4/4")),
        ({"kind": "pup", "num_conv": 2, "num_upsample_layer": 4}, ("not an M3ViT decoder",)),
        ({"kind": "pup", "conv3x3_conv1x1": False}, ("conv3x3_conv1x1",)),
        ({"kind": "fpn"}, ("linear, pup", "'fpn'")),
        ({"kind": "pup", "stride": 2}, ("unknown field", "stride")),
        ({"kind": "linear", "channels": 8}, ("unknown field",)),
        ({"kind": "pup", "channels": 0}, ("channels",)),
        ({"kind": "pup", "align_corners": "no"}, ("align_corners",)),
    ],
)
def test_config_refuses_other_heads_in_one_line(head: dict, needles: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as err:
        _from_dict(_yaml_cfg(head), "cfg.yaml")
    msg = str(err.value)
    assert "\n" not in msg and "tasks.semseg.head" in msg
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.parametrize(
    ("ck_head", "classes", "needles"),
    [
        (HeadSpec("pup", 4, 4, True, 8, False), 7, ("tasks.semseg.head.channels", "16", "8")),
        (HeadSpec("pup", 4, 4, True, CH, False), 5, ("tasks.semseg.channels", "7", "5")),
        (
            HeadSpec("pup", 2, 1, True, CH, False),
            7,
            ("tasks.semseg.head.num_conv", "is 4 in", "2 in the checkpoint"),
        ),
    ],
)
def test_decoder_of_another_shape_names_the_field(
    ck_head: HeadSpec, classes: int, needles: tuple[str, ...]
) -> None:
    cfg = pup_config(VARIANTS["4x4"])
    other = pup_config(ck_head)
    if classes != 7:
        other = other.replace(
            tasks=(("semseg", classes), ("depth", 1)),
        )
        other = dataclasses.replace(
            other,
            task_specs=tuple(dataclasses.replace(s, head=ck_head) for s in other.task_specs),
        )
    ck = m3vit_checkpoint(other, seed=3)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_result(M3ViT(cfg), ck)
    msg = str(err.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_conv1x1_variant_mismatch_names_the_field() -> None:
    ck = m3vit_checkpoint(pup_config(VARIANTS["2x1-conv1x1"]), seed=3)
    with pytest.raises(CheckpointError, match=r"tasks\.semseg\.head\.conv3x3_conv1x1"):
        load_checkpoint_result(M3ViT(pup_config(VARIANTS["2x1"])), ck)


def test_checkpoint_without_decoders_leaves_tasks_untrained() -> None:
    cfg = pup_config(VARIANTS["2x1"])
    ck = {k: v for k, v in m3vit_checkpoint(cfg, 1).items() if ".conv_" not in k}
    ck = {k: v for k, v in ck.items() if "syncbn" not in k}
    result = load_checkpoint_result(M3ViT(cfg), ck)
    assert result.untrained == ("semseg", "depth")
    assert "semseg, depth" in result.notices[-1] and "untrained" in result.notices[-1]
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint_result(M3ViT(cfg), ck, strict_heads=True)
    # a decoder with a part missing is refused either way
    part = {k: v for k, v in m3vit_checkpoint(cfg, 1).items() if "semseg.conv_1.bias" not in k}
    with pytest.raises(CheckpointError, match=r"decoders\.semseg\.conv_1\.bias"):
        load_checkpoint_result(M3ViT(cfg), part)


def test_linear_config_ignores_a_decoder(tmp_path: Path) -> None:
    mini = load_config("m3vit-mini")
    ck = m3vit_checkpoint(pup_config(VARIANTS["2x1"]), 2)
    result = load_checkpoint_result(M3ViT(mini), ck)
    assert result.untrained == ("semseg", "depth")
    assert "decoders.semseg.*" in result.notices[0]


def test_batch_norm_trains_on_batch_statistics() -> None:
    cfg = pup_config(VARIANTS["2x1"])
    model = random_model(cfg, 0).train()
    bn = model.decoders["semseg"].syncbn_fc_0
    x = torch.randn(3, CH, 4, 5) * 2 + 1
    with torch.no_grad():
        y = bn(x)
        ref = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=1e-5)
    assert float((y - ref).abs().max()) < 1e-5
    unbiased = x.transpose(0, 1).reshape(CH, -1).var(dim=1)
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * unbiased, atol=1e-5)


def test_bundle_host_section_carries_the_folded_decoders() -> None:
    from edgemoe.host.contracts.tiling import Tiling
    from edgemoe.host.export.bundle import pack
    from edgemoe.host.export.deployment import (
        WeightSource,
        bundle_file,
        host_tensors,
        read_deployment,
    )
    from edgemoe.host.export.quantize import quantize_model
    from tests.conftest import profile

    cfg = pup_config(VARIANTS["4x4"])
    model = random_model(cfg, 6, "trained")
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    qm = quantize_model(model.state_dict(), cfg, profile("lean"))
    host = host_tensors(state, cfg)
    data = bundle_file(
        pack(qm, Tiling()), cfg, qm.profile, Tiling(), WeightSource(None, None, 6), host
    )
    dep = read_deployment(data)
    assert dep.cfg == cfg
    assert sorted(dep.host) == sorted(host_param_names(cfg))
    assert not any("syncbn" in k for k in dep.host)
    tokens = np.random.default_rng(0).standard_normal((1, cfg.num_tokens, cfg.embed_dim))
    for task in cfg.task_names:
        with torch.no_grad():
            want = model.task_output(torch.from_numpy(tokens.astype(np.float32)), task).numpy()
        got = task_head_np(tokens.astype(np.float32), dep.host, task, cfg)
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_cityscapes_head_cost_at_128x256() -> None:
    from edgemoe.models.heads import decoder_macs

    tiny = load_config("m3vit-tiny-128x256")
    specs = tuple(
        dataclasses.replace(s, head=HeadSpec("pup", 4, 4, True, 256, False))
        for s in tiny.task_specs
    )
    cfg = dataclasses.replace(tiny, task_specs=specs)
    macs = dict(decoder_macs(cfg, "semseg"))
    assert macs == {
        "conv_0": 8 * 16 * 256 * 192 * 9,  # 57 M
        "conv_1": 16 * 32 * 256 * 256 * 9,  # 302 M
        "conv_2": 32 * 64 * 256 * 256 * 9,  # 1.21 G
        "conv_3": 64 * 128 * 256 * 256 * 9,  # 4.83 G
        "conv_4": 64 * 128 * 256 * 7,  # 15 M
    }
    assert 6.40e9 < sum(macs.values()) < 6.42e9
    square = dataclasses.replace(
        cfg, task_specs=tuple(dataclasses.replace(s, head=VARIANTS["2x2-square"]) for s in specs)
    )
    assert dict(decoder_macs(square, "depth"))["conv_1"] == 64 * 64 * CH * 1
