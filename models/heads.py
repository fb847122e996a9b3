"""Task decoders on the host: what follows the backbone's tokens, in numpy.

Two head kinds (a task's ``head`` in the config, :class:`~edgemoe.models.config.HeadSpec`):

- ``linear``: the light head — final LayerNorm, per-token linear, patch grid,
  bilinear upsample;
- ``pup``: M3ViT's ``VisionTransformerUpHead`` (SETR-PUP) — final LayerNorm, patch
  grid, then ``conv_i`` → batch norm → ReLU between bilinear upsamplings, then the
  resize to the image (the torch reference: :class:`edgemoe.models.m3vit.PupDecoder`).
  On the host each batch norm is folded into its convolution
  (:func:`fold_decoder`): ``W' = W·γ/√(σ²+ε)``, ``b' = (b−μ)·γ/√(σ²+ε) + β``.
  It is computed in two parts, split where the accelerator's integer decoder
  (``edgemoe.sim.golden.Golden.decode``) ends: up to the classifier's logits
  (:func:`pup_front_np`), then the resizes the host always does (:func:`pup_tail_np`).

The decoders run on the host CPU after the accelerator (docs/configs.md), so they
live here in numpy, importable on the board without torch. A 3×3 convolution is
nine BLAS matrix products, one per kernel tap, each of the tap's weight slice
``(C_out, C_in)`` with the shifted input ``(C_in, H·W)`` (:func:`conv2d_np`):
numpy's ``matmul`` is its bundled OpenBLAS ``sgemm`` (no extra dependency on the
board), and the shifted slices need 1/9 of an im2col matrix's memory.

The light head's torch version lives in this file too, so the grid and upsample
convention has one definition:

- the CLS token (row 0) is dropped; patch token ``1 + r * cols + c`` is grid cell
  ``(r, c)`` (row-major, ``rows = H / patch``, ``cols = W / patch``);
- the grid is upsampled to the image size bilinearly with half-pixel centres,
  i.e. ``F.interpolate(mode='bilinear', align_corners=False)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import HeadSpec, ModelConfig

#: State-dict prefixes of the parameters the host applies after the accelerator:
#: each task's final LayerNorm (``norms.{task}``), light head (``heads.{task}``) or
#: decoder (``decoders.{task}``: raw convolutions and batch norms, or folded).
HOST_PREFIXES = ("norms.", "heads.", "decoders.")
#: Batch-norm epsilon of M3ViT's decoders (SyncBN's default).
BN_EPS = 1e-5

if TYPE_CHECKING:
    import torch


def layer_norm_np(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis (biased variance, like ``torch.nn.LayerNorm``).

    Parameters
    ----------
    x : numpy.ndarray
        Input, last axis of width ``D``.
    w, b : numpy.ndarray
        Scale and shift, shape ``(D,)``.
    eps : float
        Added to the variance.

    Returns
    -------
    numpy.ndarray
        Normalised ``x``, same shape and dtype.
    """
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=-1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x64 - mean) / np.sqrt(var + eps) * w + b
    return y.astype(x.dtype, copy=False)


def _source_index(
    out_size: int, in_size: int, align_corners: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices and weights of bilinear resampling along one axis.

    ``align_corners=False``: half-pixel centres (source ``(i + ½)·in/out − ½``);
    true: corner pixels aligned (source ``i·(in − 1)/(out − 1)``), as torch.
    """
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = np.arange(out_size, dtype=np.float64) * scale
    else:
        scale = in_size / out_size
        src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = src - i0
    return i0, i1, frac


def bilinear_upsample_np(
    x: np.ndarray, size: tuple[int, int], align_corners: bool = False
) -> np.ndarray:
    """Resize ``(B, C, h, w)`` to ``(B, C, *size)`` like torch's bilinear ``interpolate``.

    Parameters
    ----------
    x : numpy.ndarray
        Input maps, shape ``(B, C, h, w)``.
    size : tuple[int, int]
        Output height and width.
    align_corners : bool
        torch's ``align_corners`` (default false: half-pixel centres).

    Returns
    -------
    numpy.ndarray
        Resized maps, dtype of ``x``.
    """
    _, _, h, w = x.shape
    r0, r1, fr = _source_index(size[0], h, align_corners)
    c0, c1, fc = _source_index(size[1], w, align_corners)
    x64 = x.astype(np.float64)
    rows = x64[:, :, r0, :] * (1.0 - fr)[:, None] + x64[:, :, r1, :] * fr[:, None]
    out = rows[:, :, :, c0] * (1.0 - fc) + rows[:, :, :, c1] * fc
    return out.astype(x.dtype, copy=False)


def tokens_to_grid_np(tokens: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Drop the CLS token and lay the patch tokens on the grid.

    Parameters
    ----------
    tokens : numpy.ndarray
        Per-token values, shape ``(B, num_tokens, C)``.
    cfg : ModelConfig
        Gives the grid.

    Returns
    -------
    numpy.ndarray
        Shape ``(B, C, rows, cols)``.
    """
    rows, cols = cfg.grid
    b, n, c = tokens.shape
    if n != cfg.num_tokens:
        raise ValueError(f"expected {cfg.num_tokens} tokens for {cfg.name}, got {n}")
    return tokens[:, 1:, :].reshape(b, rows, cols, c).transpose(0, 3, 1, 2)


def light_head_np(
    tokens: np.ndarray,
    norm_w: np.ndarray,
    norm_b: np.ndarray,
    head_w: np.ndarray,
    head_b: np.ndarray,
    cfg: ModelConfig,
) -> np.ndarray:
    """Final LayerNorm and light head of one task, in numpy.

    Parameters
    ----------
    tokens : numpy.ndarray
        Backbone output before the final norm, shape ``(B, N, D)``.
    norm_w, norm_b : numpy.ndarray
        Final LayerNorm (``norm.weight``, ``norm.bias``), shape ``(D,)``.
    head_w, head_b : numpy.ndarray
        Task head (``heads.{task}.weight`` ``(C, D)``, ``.bias`` ``(C,)``).
    cfg : ModelConfig
        Gives the grid, the image size and the LayerNorm epsilon.

    Returns
    -------
    numpy.ndarray
        Float32 task output, shape ``(B, C, H, W)``.
    """
    x = layer_norm_np(np.asarray(tokens, dtype=np.float32), norm_w, norm_b, cfg.ln_eps)
    per_token = x.astype(np.float64) @ np.asarray(head_w, np.float64).T + head_b
    grid = tokens_to_grid_np(per_token.astype(np.float32), cfg)
    return bilinear_upsample_np(grid, cfg.image_size)


def conv2d_np(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Stride-1 "same" convolution (cross-correlation, like ``torch.nn.Conv2d``), float32.

    A ``k×k`` kernel (odd ``k``, zero padding ``k // 2``) is ``k²`` BLAS products of
    the tap's weights ``(C_out, C_in)`` with the shifted input ``(C_in, H·W)``.

    Parameters
    ----------
    x : numpy.ndarray
        Input ``(B, C_in, H, W)``.
    w : numpy.ndarray
        Kernel ``(C_out, C_in, k, k)``.
    b : numpy.ndarray
        Bias ``(C_out,)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, C_out, H, W)``.
    """
    x = np.asarray(x, np.float32)
    w = np.asarray(w, np.float32)
    bsz, cin, h, wd = x.shape
    cout, cin_w, k, k2 = w.shape
    if cin_w != cin or k != k2 or k % 2 == 0:
        raise ValueError(f"conv2d_np: kernel {w.shape} does not fit input {x.shape}")
    pad = k // 2
    out = np.empty((bsz, cout, h * wd), np.float32)
    taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1))  # (k, k, C_out, C_in)
    for n in range(bsz):
        xp = np.pad(x[n], ((0, 0), (pad, pad), (pad, pad))) if pad else x[n]
        acc = np.zeros((cout, h * wd), np.float32)
        for dy in range(k):
            for dx in range(k):
                shifted = np.ascontiguousarray(xp[:, dy : dy + h, dx : dx + wd])
                acc += taps[dy, dx] @ shifted.reshape(cin, h * wd)
        out[n] = acc + np.asarray(b, np.float32)[:, None]
    return out.reshape(bsz, cout, h, wd)


def _pup_raw(params: Mapping[str, np.ndarray], task: str, i: int) -> bool:
    return f"decoders.{task}.syncbn_fc_{i}.running_mean" in params


def fold_decoder(
    params: Mapping[str, Any], task: str, cfg: ModelConfig, dtype: Any = np.float32
) -> dict[str, np.ndarray]:
    """A ``pup`` task's convolutions with each batch norm folded in (float32 by default).

    Parameters
    ----------
    params : mapping
        A float state dict holding ``decoders.{task}.conv_{i}.{weight,bias}`` and
        ``decoders.{task}.syncbn_fc_{i}.{weight,bias,running_mean,running_var}``.
    task : str
        A task whose head kind is ``pup``.
    cfg : ModelConfig
        Gives the head's shape.
    dtype : numpy dtype
        Of the result (the folding itself is float64; export quantizes from float64).

    Returns
    -------
    dict[str, numpy.ndarray]
        ``decoders.{task}.fused_{i}.weight`` ``(C_out, C_in, k, k)`` and ``.bias``
        for every convolution ``i`` (the last, without a norm, as it is).
    """
    spec = cfg.task_spec(task).head
    pre = f"decoders.{task}."
    out: dict[str, np.ndarray] = {}
    for i in range(spec.convs):
        w = np.asarray(params[f"{pre}conv_{i}.weight"], np.float64)
        b = np.asarray(params[f"{pre}conv_{i}.bias"], np.float64)
        if _pup_raw(params, task, i):
            bn = f"{pre}syncbn_fc_{i}."
            scale = np.asarray(params[bn + "weight"], np.float64) / np.sqrt(
                np.asarray(params[bn + "running_var"], np.float64) + BN_EPS
            )
            w = w * scale[:, None, None, None]
            b = (b - np.asarray(params[bn + "running_mean"], np.float64)) * scale + np.asarray(
                params[bn + "bias"], np.float64
            )
        out[f"{pre}fused_{i}.weight"] = w.astype(dtype)
        out[f"{pre}fused_{i}.bias"] = b.astype(dtype)
    return out


def pup_front_np(
    tokens: np.ndarray,
    norm_w: np.ndarray,
    norm_b: np.ndarray,
    fused: list[tuple[np.ndarray, np.ndarray]],
    spec: HeadSpec,
    cfg: ModelConfig,
    record: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The part of a ``pup`` decoder the accelerator's datapath computes, in float.

    Final LayerNorm, CLS dropped, the token grid, then ``num_conv 4``: (conv → ReLU →
    bilinear ×2) ×3, conv → ReLU, the 1×1 classifier, giving logits at ``H/2 × W/2``;
    ``num_conv 2``: conv → ReLU → the 1×1 classifier at ``H/16 × W/16``. What is left
    (:func:`pup_tail_np`) is resizing only: a 1×1 convolution commutes with a bilinear
    resize (a per-pixel affine map and weights that sum to 1), so M3ViT's resize
    before its classifier (``num_upsample_layer 2``) moves after it.

    Parameters
    ----------
    tokens, norm_w, norm_b, fused, spec, cfg
        As :func:`pup_head_np`.
    record : dict, optional
        Filled with the value after each stage, named as the integer datapath's
        stages (``dec.norm``, ``dec.conv_{i}``, ``dec.up_{i}``, ``dec.logits``).

    Returns
    -------
    numpy.ndarray
        float32 logits ``(B, C, h, w)``.
    """
    x = layer_norm_np(np.asarray(tokens, dtype=np.float32), norm_w, norm_b, cfg.ln_eps)
    x = np.ascontiguousarray(tokens_to_grid_np(x, cfg))
    ac = spec.align_corners
    n = spec.convs

    def keep(name: str, v: np.ndarray) -> None:
        if record is not None:
            record[name] = v

    keep("dec.norm", x)
    for i in range(n - 1):
        if i > 0:  # only the four-conv head upsamples between its convolutions
            x = bilinear_upsample_np(x, (x.shape[-2] * 2, x.shape[-1] * 2), ac)
            keep(f"dec.up_{i}", x)
        x = np.maximum(conv2d_np(x, *fused[i]), 0.0)
        keep(f"dec.conv_{i}", x)
    x = conv2d_np(x, *fused[n - 1])
    keep("dec.logits", x)
    return x


def pup_tail_np(logits: np.ndarray, spec: HeadSpec, cfg: ModelConfig) -> np.ndarray:
    """The host's resizes after :func:`pup_front_np`'s logits, up to the image size.

    ``num_conv 4``: the last bilinear ×2; ``num_conv 2``: M3ViT's square ``4·w``
    resize (``num_upsample_layer 2``), then the resize to the image (both with the
    config's ``align_corners``); then ``MultiTaskModel``'s resize to the input
    (``align_corners`` false; the identity when the size already matches).
    """
    x = np.asarray(logits, np.float32)
    ac = spec.align_corners
    if spec.num_conv == 4:
        x = bilinear_upsample_np(x, (x.shape[-2] * 2, x.shape[-1] * 2), ac)
    else:
        if spec.num_upsample_layer == 2:
            # M3ViT's single-integer size: a square map of 4 x the grid's width
            side = x.shape[-1] * 4
            x = bilinear_upsample_np(x, (side, side), ac)
        x = bilinear_upsample_np(x, cfg.image_size, ac)
    return bilinear_upsample_np(x, cfg.image_size)


def pup_head_np(
    tokens: np.ndarray,
    norm_w: np.ndarray,
    norm_b: np.ndarray,
    fused: list[tuple[np.ndarray, np.ndarray]],
    spec: HeadSpec,
    cfg: ModelConfig,
) -> np.ndarray:
    """M3ViT's ``VisionTransformerUpHead`` in eval mode, batch norms folded, in numpy.

    :func:`pup_tail_np` of :func:`pup_front_np`: the same split as the accelerator's
    decoder, so the host's resizes are one definition.

    Parameters
    ----------
    tokens : numpy.ndarray
        Backbone output before the final norm, ``(B, N, D)``.
    norm_w, norm_b : numpy.ndarray
        The task's final LayerNorm.
    fused : list of (weight, bias)
        ``conv_0 … conv_n`` with their batch norms folded (:func:`fold_decoder`).
    spec : HeadSpec
        The decoder variant.
    cfg : ModelConfig
        Gives the grid, the image size and the LayerNorm epsilon.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, C, H, W)``.
    """
    logits = pup_front_np(tokens, norm_w, norm_b, fused, spec, cfg)
    return pup_tail_np(logits, spec, cfg)


def decoder_macs(cfg: ModelConfig, task: str) -> list[tuple[str, int]]:
    """Multiply-accumulates of each convolution of ``task``'s decoder, per image.

    Returns
    -------
    list of (str, int)
        ``('conv_i', MACs)`` in order; the light head is one ``('linear', MACs)``.
    """
    spec = cfg.task_spec(task)
    head = spec.head
    rows, cols = cfg.grid
    d = cfg.embed_dim
    if head.kind == "linear":
        return [("linear", rows * cols * d * spec.channels)]
    out = []
    h, w = rows, cols
    for i in range(head.convs):
        cin = d if i == 0 else head.channels
        cout = spec.channels if i == head.convs - 1 else head.channels
        if i > 0 and head.num_conv == 4 and i < 4:
            h, w = 2 * h, 2 * w
        elif i == 1 and head.num_upsample_layer == 2:
            h = w = 4 * w  # M3ViT's square resize before the classifier
        out.append((f"conv_{i}", h * w * cin * cout * head.conv_kernel(i) ** 2))
    return out


def host_param_names(cfg: ModelConfig) -> list[str]:
    """The tensors a bundle's host section carries for every task (see :func:`host_params`)."""
    names = []
    for s in cfg.task_specs:
        names += [f"norms.{s.name}.weight", f"norms.{s.name}.bias"]
        if s.head.kind == "linear":
            names += [f"heads.{s.name}.weight", f"heads.{s.name}.bias"]
        else:
            for i in range(s.head.convs):
                names += [
                    f"decoders.{s.name}.fused_{i}.weight",
                    f"decoders.{s.name}.fused_{i}.bias",
                ]
    return names


def host_params(state: Mapping[str, Any], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """The host's tensors of a float state dict: norms, light heads, folded decoders.

    Raises
    ------
    KeyError
        A tensor the config's heads need is missing (its name is the message).
    """
    out: dict[str, np.ndarray] = {}
    for s in cfg.task_specs:
        if s.head.kind == "pup" and f"decoders.{s.name}.fused_0.weight" not in state:
            try:
                out.update(fold_decoder(state, s.name, cfg))
            except KeyError as e:
                raise KeyError(e.args[0]) from None
    for name in host_param_names(cfg):
        if name not in out:
            if name not in state:
                raise KeyError(name)
            out[name] = np.asarray(state[name])
    return out


def pup_params(
    params, task: str, cfg: ModelConfig
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """A ``pup`` task's final norm and folded convolutions from ``params`` (a float state
    dict, or a bundle's host tensors with ``decoders.{task}.*`` raw or folded).

    Returns
    -------
    norm_w, norm_b : numpy.ndarray
    fused : list of (weight, bias)
        ``conv_0 … conv_n``, batch norms folded (:func:`fold_decoder`).
    """
    spec = cfg.task_spec(task).head
    pre = f"decoders.{task}."
    norm = (f"norms.{task}.weight", f"norms.{task}.bias")
    if f"{pre}fused_0.weight" not in params:
        params = fold_decoder(params, task, cfg) | {k: params[k] for k in norm}
    fused = [
        (params[f"{pre}fused_{i}.weight"], params[f"{pre}fused_{i}.bias"])
        for i in range(spec.convs)
    ]
    return params[norm[0]], params[norm[1]], fused


def decoder_front_np(
    tokens: np.ndarray,
    params,
    task: str,
    cfg: ModelConfig,
    record: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """The float counterpart of the datapath's decoder for ``task`` (its head
    :attr:`~edgemoe.models.config.HeadSpec.on_datapath`): :func:`pup_front_np` with the
    task's parameters, logits ``(B, C, h, w)``; :func:`pup_tail_np` finishes them."""
    spec = cfg.task_spec(task).head
    return pup_front_np(tokens, *pup_params(params, task, cfg), spec, cfg, record=record)


def task_head_np(tokens: np.ndarray, params, task: str, cfg: ModelConfig) -> np.ndarray:
    """What the host computes after the backbone for ``task``: its final norm and head.

    ``params`` is a float state dict or a bundle's host tensors (``norms.{task}.*``
    and ``heads.{task}.*``, or ``decoders.{task}.*`` raw or folded). The head kind
    comes from the config. A ``pup`` head is :func:`pup_tail_np` of
    :func:`pup_front_np`; where the head is
    :attr:`~edgemoe.models.config.HeadSpec.on_datapath`, the front is the float
    counterpart of the datapath's integer decoder (``Golden.decode``).
    """
    spec = cfg.task_spec(task).head
    if spec.kind == "pup":
        return pup_head_np(tokens, *pup_params(params, task, cfg), spec, cfg)
    return light_head_np(
        tokens,
        params[f"norms.{task}.weight"],
        params[f"norms.{task}.bias"],
        params[f"heads.{task}.weight"],
        params[f"heads.{task}.bias"],
        cfg,
    )


def light_head_torch(
    tokens: torch.Tensor,
    norm_w: torch.Tensor,
    norm_b: torch.Tensor,
    head_w: torch.Tensor,
    head_b: torch.Tensor,
    cfg: ModelConfig,
) -> torch.Tensor:
    """Torch twin of :func:`light_head_np` (same arguments, tensors; exportable to ONNX).

    Returns
    -------
    torch.Tensor
        Task output, shape ``(B, C, H, W)``.
    """
    import torch.nn.functional as F

    x = F.layer_norm(tokens, (tokens.shape[-1],), norm_w, norm_b, cfg.ln_eps)
    per_token = F.linear(x[:, 1:, :], head_w, head_b)
    rows, cols = cfg.grid
    grid = per_token.reshape(per_token.shape[0], rows, cols, -1).permute(0, 3, 1, 2)
    return F.interpolate(grid, size=cfg.image_size, mode="bilinear", align_corners=False)
