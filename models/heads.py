"""Light task head: final LayerNorm, per-token linear, patch grid, bilinear upsample.

The head runs on the host CPU after the accelerator (DESIGN.md §2.2.6), so its
reference lives here in numpy, importable on the board without torch. The torch
version used by :class:`edgemoe.models.m3vit.M3ViT` lives in the same file so the
grid and upsample convention has one definition:

- the CLS token (row 0) is dropped; patch token ``1 + r * cols + c`` is grid cell
  ``(r, c)`` (row-major, ``rows = H / patch``, ``cols = W / patch``);
- the grid is upsampled to the image size bilinearly with half-pixel centres,
  i.e. ``F.interpolate(mode='bilinear', align_corners=False)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .config import ModelConfig

#: State-dict prefixes of the parameters the host applies after the accelerator:
#: each task's final LayerNorm (``norms.{task}``) and light head (``heads.{task}``).
HOST_PREFIXES = ("norms.", "heads.")

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


def _source_index(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices and weights of half-pixel bilinear resampling along one axis."""
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = src - i0
    return i0, i1, frac


def bilinear_upsample_np(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(B, C, h, w)`` to ``(B, C, *size)`` like ``align_corners=False`` bilinear.

    Parameters
    ----------
    x : numpy.ndarray
        Input maps, shape ``(B, C, h, w)``.
    size : tuple[int, int]
        Output height and width.

    Returns
    -------
    numpy.ndarray
        Resized maps, dtype of ``x``.
    """
    _, _, h, w = x.shape
    r0, r1, fr = _source_index(size[0], h)
    c0, c1, fc = _source_index(size[1], w)
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


def task_head_np(tokens: np.ndarray, params, task: str, cfg: ModelConfig) -> np.ndarray:
    """What the host computes after the accelerator for ``task``: its final norm and head.

    ``params`` is a float state dict or a bundle's host tensors (``norms.{task}.*``,
    ``heads.{task}.*``); the one place run, verify, eval and the API apply them.
    """
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
