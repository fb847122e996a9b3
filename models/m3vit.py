"""Float reference of M3ViT, the multi-task mixture-of-experts ViT (docs/configs.md).

Parameter names follow VITA-Group/M3ViT (timm + FastMoE) so its state dicts load
unchanged; see :mod:`edgemoe.models.checkpoint`. The backbone is what the
accelerator computes; the final LayerNorm and the light task head run on the host
(:mod:`edgemoe.models.heads`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import HeadSpec, ModelConfig
from .heads import light_head_torch

InitStyle = Literal["m3vit", "trained"]
Record = dict[str, Tensor]

_INIT_STD = 0.02


def topk_mask(p: Tensor, k: int) -> Tensor:
    """Top-``k`` experts per token, ties going to the lower expert index.

    Expert ``e`` gets rank ``#{j : p_j > p_e} + #{j < e : p_j == p_e}`` and is
    chosen iff its rank is below ``k``. Unlike ``torch.topk`` the tie order is
    defined, and the graph (comparisons and sums) exports to ONNX as is.

    Parameters
    ----------
    p : torch.Tensor
        Scores, experts on the last axis.
    k : int
        Experts to choose, ``1 <= k <= E``.

    Returns
    -------
    torch.Tensor
        Bool mask, same shape as ``p``, exactly ``k`` true per row.
    """
    e = p.shape[-1]
    if not 1 <= k <= e:
        raise ValueError(f"top-k needs 1 <= k <= {e}, got k={k}")
    idx = torch.arange(e, device=p.device)
    # Pairwise [..., e, j]: does expert j outrank expert e?
    pe = p.unsqueeze(-1)
    pj = p.unsqueeze(-2)
    lower = idx.unsqueeze(0) < idx.unsqueeze(1)  # [e, j] = j < e
    beats = (pj > pe) | ((pj == pe) & lower)
    rank = beats.to(torch.int64).sum(dim=-1)
    return rank < k


def normalize(images: np.ndarray | Tensor, cfg: ModelConfig) -> Tensor:
    """Turn uint8 RGB images into the model's normalised float input.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor
        uint8, shape ``(B, H, W, C)`` (or one image ``(H, W, C)``).
    cfg : ModelConfig
        Gives ``pixel_mean`` and ``pixel_std`` (per channel, pixels in [0, 1]).

    Returns
    -------
    torch.Tensor
        float32 ``(B, C, H, W)`` holding ``(x / 255 - mean) / std``.
    """
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {x.dtype}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] != cfg.in_chans:
        raise ValueError(f"images must have shape (B, H, W, {cfg.in_chans}), got {tuple(x.shape)}")
    mean = torch.tensor(cfg.pixel_mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(cfg.pixel_std, dtype=torch.float32).view(1, -1, 1, 1)
    x = x.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return ((x - mean) / std).contiguous()


def _param(*shape: int) -> nn.Parameter:
    # Built on the meta device; M3ViT.__init__ materialises and initialises them.
    return nn.Parameter(torch.empty(*shape, device="meta"))


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: ``proj`` is a conv with kernel = stride = patch."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        p = cfg.patch_size
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, p, stride=p, device="meta")

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with timm's fused ``qkv`` layout."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.scale = cfg.head_dim**-0.5
        self.qkv = nn.Linear(d, 3 * d, bias=cfg.qkv_bias, device="meta")
        self.proj = nn.Linear(d, d, device="meta")

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.attend(self.qkv(x)))

    def attend(self, qkv: Tensor) -> Tensor:
        """Attention of the raw ``qkv`` output, heads concatenated (before ``proj``)."""
        b, n, d3 = qkv.shape
        # Columns [0:D] = q, [D:2D] = k, [2D:3D] = v; head h owns h*hd:(h+1)*hd of each.
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return (attn @ v).transpose(1, 2).reshape(b, n, d3 // 3)


class Mlp(nn.Module):
    """Dense MLP: ``fc1`` → exact GELU → ``fc2``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.mlp_hidden, device="meta")
        self.fc2 = nn.Linear(cfg.mlp_hidden, cfg.embed_dim, device="meta")

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ExpertLinear(nn.Module):
    """One linear layer per expert (FastMoE's ``FMoELinear``): weight ``(E, out, in)``."""

    def __init__(self, num_experts: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = _param(num_experts, out_features, in_features)
        self.bias = _param(num_experts, out_features)


class Experts(nn.Module):
    """The experts of one MoE block: ``htoh4`` (D → hidden) and ``h4toh`` (hidden → D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        e, d, h = cfg.num_experts, cfg.embed_dim, cfg.expert_hidden
        self.htoh4 = ExpertLinear(e, d, h)
        self.h4toh = ExpertLinear(e, h, d)


class TaskGate(nn.Module):
    """The gate of one task: ``w_gate`` ``(D, E)``, no bias (M3ViT's multi-gate)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w_gate = _param(cfg.embed_dim, cfg.num_experts)


class MoE(nn.Module):
    """Task-gated mixture of experts replacing the dense MLP (docs/configs.md)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.top_k = cfg.top_k
        self.experts = Experts(cfg)
        self.gate = nn.ModuleDict({t: TaskGate(cfg) for t in cfg.task_names})

    def forward(self, h: Tensor, task: str, dense: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Mix the chosen experts of every token.

        Parameters
        ----------
        h : torch.Tensor
            Normalised tokens ``(B, N, D)``.
        task : str
            Task name, selects the gate.
        dense : bool
            Run every expert on every token and mask (static graph, for ONNX)
            instead of gathering the tokens routed to each expert.

        Returns
        -------
        y, logits, mask : torch.Tensor
            MoE output ``(B, N, D)``, gate logits ``(B, N, E)``, top-k mask ``(B, N, E)``.
        """
        logits = h @ self.gate[task].w_gate
        p = torch.softmax(logits, dim=-1)
        mask = topk_mask(p, self.top_k)
        weight = p * mask.to(p.dtype)
        w1, b1 = self.experts.htoh4.weight, self.experts.htoh4.bias
        w2, b2 = self.experts.h4toh.weight, self.experts.h4toh.bias
        if dense:
            hid = F.gelu(torch.einsum("bnd,ehd->bneh", h, w1) + b1)
            out = torch.einsum("bneh,edh->bned", hid, w2) + b2
            y = (out * weight.unsqueeze(-1)).sum(dim=2)
            return y, logits, mask
        flat = h.reshape(-1, h.shape[-1])
        flat_w = weight.reshape(-1, weight.shape[-1])
        flat_mask = mask.reshape(-1, mask.shape[-1])
        y = torch.zeros_like(flat)
        for e in range(w1.shape[0]):
            rows = flat_mask[:, e].nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            out = F.linear(F.gelu(F.linear(flat[rows], w1[e], b1[e])), w2[e], b2[e])
            y.index_add_(0, rows, out * flat_w[rows, e : e + 1])
        return y.reshape(h.shape), logits, mask


class Block(nn.Module):
    """Pre-norm transformer block; ``mlp`` is :class:`Mlp` or :class:`MoE`."""

    def __init__(self, cfg: ModelConfig, moe: bool) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.ln_eps, device="meta")
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(d, eps=cfg.ln_eps, device="meta")
        self.mlp: Mlp | MoE = MoE(cfg) if moe else Mlp(cfg)

    def forward(
        self, x: Tensor, task: str, moe_dense: bool, record: Record | None, name: str
    ) -> Tensor:
        def keep(key: str, t: Tensor) -> None:
            if record is not None:
                record[f"{name}.{key}"] = t.detach().clone()

        h = self.norm1(x)
        keep("ln1", h)
        qkv = self.attn.qkv(h)
        keep("qkv", qkv)
        a = self.attn.attend(qkv)
        keep("attn", a)
        x = x + self.attn.proj(a)
        keep("proj", x)
        h = self.norm2(x)
        keep("ln2", h)
        if isinstance(self.mlp, MoE):
            y, logits, mask = self.mlp(h, task, dense=moe_dense)
            keep("gate", logits)
            keep("route", mask)
        else:
            y = self.mlp(h)
        x = x + y
        keep("mlp", x)
        return x


_BN_EPS = 1e-5


class BatchNorm(nn.Module):
    """M3ViT's ``SyncBN`` (eps 1e-5, momentum 0.1): running statistics in eval mode.

    In training, the batch statistics span every rank of an initialised
    ``torch.distributed`` group (sums all-reduced, differentiably), so a run on
    ``N`` processes normalises like one process holding the whole batch. The
    state dict holds ``weight``, ``bias``, ``running_mean`` and ``running_var``
    (``num_batches_tracked`` of M3ViT's checkpoints is not used).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = _param(channels)
        self.bias = _param(channels)
        self.register_buffer("running_mean", torch.zeros(channels, device="meta"))
        self.register_buffer("running_var", torch.ones(channels, device="meta"))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, _BN_EPS
            )
        dims = (0, 2, 3)
        stats = torch.stack([x.sum(dims), (x * x).sum(dims)])
        count = torch.tensor(float(x.numel() // x.shape[1]))
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            from torch.distributed.nn.functional import all_reduce

            stats = all_reduce(stats)
            dist.all_reduce(count)
        mean = stats[0] / count
        var = (stats[1] / count - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            n = float(count)
            self.running_mean.mul_(0.9).add_(0.1 * mean.detach())
            self.running_var.mul_(0.9).add_(0.1 * var.detach() * n / max(n - 1.0, 1.0))
        scale = self.weight / torch.sqrt(var + _BN_EPS)
        return x * scale.view(1, -1, 1, 1) + (self.bias - mean * scale).view(1, -1, 1, 1)


class PupDecoder(nn.Module):
    """M3ViT's ``VisionTransformerUpHead`` without its LayerNorm (kept in ``norms.{task}``).

    Submodules carry M3ViT's names, so ``decoders.{task}.conv_{i}.*`` and
    ``decoders.{task}.syncbn_fc_{i}.*`` of its checkpoints load unchanged.
    """

    def __init__(self, cfg: ModelConfig, spec: HeadSpec, out_channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.spec = spec
        d, c = cfg.embed_dim, spec.channels
        n = spec.convs
        for i in range(n):
            cin = d if i == 0 else c
            cout = out_channels if i == n - 1 else c
            k = spec.conv_kernel(i)
            self.add_module(f"conv_{i}", nn.Conv2d(cin, cout, k, padding=k // 2, device="meta"))
        for i in range(n - 1):  # every conv but the classifier is followed by a norm
            self.add_module(f"syncbn_fc_{i}", BatchNorm(c))

    def _block(self, x: Tensor, i: int) -> Tensor:
        x = getattr(self, f"conv_{i}")(x)
        return F.relu(getattr(self, f"syncbn_fc_{i}")(x))

    def forward(self, grid: Tensor) -> Tensor:
        """Decode the normalised token grid ``(B, D, h, w)`` to ``(B, C, H, W)``."""
        spec, size = self.spec, self.cfg.image_size
        ac = spec.align_corners

        def up(x: Tensor, to: int | tuple[int, int]) -> Tensor:
            return F.interpolate(x, size=to, mode="bilinear", align_corners=ac)

        x = self._block(grid, 0)
        if spec.num_conv == 4:
            for i in (1, 2, 3):
                x = self._block(up(x, (x.shape[-2] * 2, x.shape[-1] * 2)), i)
            x = self.conv_4(x)
            x = up(x, (x.shape[-2] * 2, x.shape[-1] * 2))
        else:
            if spec.num_upsample_layer == 2:
                # M3ViT passes one integer: a square map of 4 x the grid's width
                x = up(x, x.shape[-1] * 4)
            x = up(self.conv_1(x), size)
        # MultiTaskModel's resize of every decoder output to the input
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class M3ViT(nn.Module):
    """M3ViT backbone with per-task gates, per-task final norms and task decoders.

    Parameters
    ----------
    cfg : ModelConfig
        Model shape.
    seed : int
        Seed of the initial weights (:func:`init_weights`, style ``'m3vit'``);
        construction never touches the global RNG.

    Attributes
    ----------
    moe_dense : bool
        Compute MoE blocks densely (every expert on every token, masked) instead
        of sparsely; same result to float rounding, static graph for ONNX export.
    """

    def __init__(self, cfg: ModelConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.moe_dense = False
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = _param(1, 1, d)
        self.pos_embed = _param(1, cfg.num_tokens, d)
        self.blocks = nn.ModuleList(Block(cfg, cfg.is_moe(i)) for i in range(cfg.depth))
        # M3ViT has no backbone norm: each task's decoder owns its final LayerNorm.
        self.norms = nn.ModuleDict(
            {t: nn.LayerNorm(d, eps=cfg.ln_eps, device="meta") for t in cfg.task_names}
        )
        specs = cfg.task_specs
        self.heads = nn.ModuleDict(
            {
                s.name: nn.Linear(d, s.channels, device="meta")
                for s in specs
                if s.head.kind == "linear"
            }
        )
        self.decoders = nn.ModuleDict(
            {s.name: PupDecoder(cfg, s.head, s.channels) for s in specs if s.head.kind == "pup"}
        )
        self.to_empty(device="cpu")
        init_weights(self, seed)
        self.eval()

    def _task_name(self, task: str | int) -> str:
        return self.cfg.task_names[self.cfg.task_id(task)]

    def normalize(self, images: np.ndarray | Tensor) -> Tensor:
        """:func:`normalize` with this model's config."""
        return normalize(images, self.cfg)

    def embed(self, images: Tensor) -> Tensor:
        """Patch embedding, CLS token prepended (row 0), position embedding added."""
        cfg = self.cfg
        want = (cfg.in_chans, *cfg.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(
                f"{cfg.name} expects images of shape (B, {', '.join(map(str, want))}), "
                f"got {tuple(images.shape)}"
            )
        patches = self.patch_embed(images)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.pos_embed

    def backbone(self, images: Tensor, task: str | int, record: Record | None = None) -> Tensor:
        """Tokens after the last block's residual add (the accelerator's output).

        Parameters
        ----------
        images : torch.Tensor
            Normalised images, float ``(B, C, H, W)``.
        task : str or int
            Task name or id; selects the MoE gates.
        record : dict, optional
            Filled with detached copies of every layer boundary: ``'embed'`` and,
            per block ``i``, ``block{i}.ln1``, ``.qkv``, ``.attn``, ``.proj``,
            ``.ln2``, (MoE blocks) ``.gate`` and ``.route``, and ``.mlp`` (the
            block output).

        Returns
        -------
        torch.Tensor
            Tokens ``(B, N, D)`` before the final norm.
        """
        name = self._task_name(task)
        x = self.embed(images)
        if record is not None:
            record["embed"] = x.detach().clone()
        for i, block in enumerate(self.blocks):
            x = block(x, name, self.moe_dense, record, f"block{i}")
        return x

    def task_output(self, tokens: Tensor, task: str | int) -> Tensor:
        """The task's own final norm and decoder: ``(B, N, D)`` tokens to ``(B, C, H, W)``."""
        name = self._task_name(task)
        norm = self.norms[name]
        if name in self.heads:
            head = self.heads[name]
            return light_head_torch(
                tokens, norm.weight, norm.bias, head.weight, head.bias, self.cfg
            )
        x = norm(tokens[:, 1:, :])
        rows, cols = self.cfg.grid
        grid = x.transpose(1, 2).reshape(x.shape[0], x.shape[-1], rows, cols)
        return self.decoders[name](grid)

    def forward(self, images: Tensor, task: str | int) -> Tensor:
        """Dense prediction of ``task`` for normalised ``images``: ``(B, C, H, W)``."""
        return self.task_output(self.backbone(images, task), task)


@torch.no_grad()
def init_weights(model: M3ViT, seed: int, style: InitStyle = "m3vit") -> M3ViT:
    """Seeded initialisation of every parameter, independent of the global RNG.

    Parameters
    ----------
    model : M3ViT
        Initialised in place.
    seed : int
        Seed of a private ``torch.Generator``.
    style : {'m3vit', 'trained'}
        ``'m3vit'``: M3ViT's own init — the decoders' convolutions U(±1/√fan_in)
        (torch's default, weights and biases), truncated normal (std 0.02) for every
        other weight matrix, expert weight, gate, ``cls_token`` and ``pos_embed``; zero
        biases; LayerNorm scale 1 and shift 0 (batch norms too, running mean 0,
        variance 1). ``'trained'``: the same plus biases ~ N(0, 0.02), norm scale
        ~ 1 + N(0, 0.1) and shift ~ N(0, 0.05), running means ~ N(0, 0.1) and
        variances ~ U(0.5, 2), so that tests exercise every parameter.

    Returns
    -------
    M3ViT
        ``model``.
    """
    if style not in ("m3vit", "trained"):
        raise ValueError(f"unknown init style {style!r} (known: m3vit, trained)")
    g = torch.Generator().manual_seed(seed)
    trained = style == "trained"
    norm_params = {
        f"{m}.{p}" if m else p
        for m, mod in model.named_modules()
        if isinstance(mod, nn.LayerNorm | BatchNorm)
        for p in ("weight", "bias")
    }
    for mod in model.modules():
        if isinstance(mod, BatchNorm):
            mod.running_mean.zero_()
            mod.running_var.fill_(1.0)
            if trained:
                mod.running_mean.normal_(0.0, 0.1, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
    conv_params = {
        f"{m}.{p}": mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
        for m, mod in model.named_modules()
        if isinstance(mod, nn.Conv2d) and m.startswith("decoders.")
        for p in ("weight", "bias")
    }
    for name, param in model.named_parameters():
        if name in conv_params:
            # the decoders' convolutions keep torch's default (M3ViT does not re-init them)
            bound = conv_params[name] ** -0.5
            param.uniform_(-bound, bound, generator=g)
        elif name in norm_params and name.endswith(".weight"):
            param.fill_(1.0)
            if trained:
                param.add_(torch.randn(param.shape, generator=g) * 0.1)
        elif name in norm_params:
            param.zero_()
            if trained:
                param.normal_(0.0, 0.05, generator=g)
        elif name.endswith(".bias"):
            param.zero_()
            if trained:
                param.normal_(0.0, _INIT_STD, generator=g)
        else:
            nn.init.trunc_normal_(param, std=_INIT_STD, generator=g)
    return model


def random_model(cfg: ModelConfig, seed: int, style: InitStyle = "m3vit") -> M3ViT:
    """A seeded random :class:`M3ViT` in eval mode (see :func:`init_weights`)."""
    model = M3ViT(cfg, seed=seed)
    if style != "m3vit":
        init_weights(model, seed, style)
    return model.eval()
