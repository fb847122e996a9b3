"""Images in the accelerator's layout: uint8, patch-major (docs/design.md)."""

from __future__ import annotations

import numpy as np

from edgemoe.models.config import ModelConfig


def to_patches(images: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """(B, H, W, C) uint8 -> (B, patches, C*p*p) uint8.

    Patches run row-major over the grid; inside a patch the order is
    (channel, row, column), the flattening of the patch-embedding conv weight
    ``(D, C, p, p)``, so patch embedding is one linear map per patch.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError("images must be uint8 of shape (B, H, W, C)")
    B, H, W, C = images.shape
    p = cfg.patch_size
    if (H, W) != tuple(cfg.image_size) or C != cfg.in_chans:
        raise ValueError(
            f"images are {H}x{W}x{C}, config {cfg.name} wants "
            f"{cfg.image_size[0]}x{cfg.image_size[1]}x{cfg.in_chans}"
        )
    gh, gw = H // p, W // p
    x = images.reshape(B, gh, p, gw, p, C).transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(x.reshape(B, gh * gw, C * p * p))


def random_images(cfg: ModelConfig, n: int, seed: int) -> np.ndarray:
    """Seeded test images (B, H, W, 3) uint8: smooth colour fields with edges and noise.

    Closer to natural images than white noise (spatially correlated patches),
    so attention and routing see structure.
    """
    rng = np.random.default_rng(seed)
    H, W = cfg.image_size
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    out = np.empty((n, H, W, cfg.in_chans), dtype=np.uint8)
    for i in range(n):
        img = np.zeros((H, W, cfg.in_chans))
        for c in range(cfg.in_chans):
            fx, fy = rng.uniform(0.5, 4, size=2) * 2 * np.pi
            ph = rng.uniform(0, 2 * np.pi)
            img[..., c] = 0.5 + 0.35 * np.sin(fx * xx / W + fy * yy / H + ph)
        for _ in range(3):  # a few flat shapes with hard edges
            cy, cx = rng.uniform(0, H), rng.uniform(0, W)
            r = rng.uniform(0.1, 0.4) * min(H, W)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img[mask] = rng.uniform(0, 1, size=cfg.in_chans)
        img += rng.normal(0, 0.04, size=img.shape)
        out[i] = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    return out


def scene_images(cfg: ModelConfig, n: int, seed: int) -> np.ndarray:
    """Seeded scene-like images (B, H, W, 3) uint8: what fidelity checks and calibration use.

    Procedural street scenes (:func:`sample_scene`), one seed
    per image (``seed``, ``seed + 1``, ...). Trained weights respond to scenes
    very differently from noise (issue 14: noise understates the token error
    about tenfold), so every fidelity check and calibration starts here; this is
    the one place to point at a richer scene generator.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    return np.stack([sample_scene(cfg, seed + i) for i in range(n)])


def sample_scene(cfg: ModelConfig, seed: int = 0) -> np.ndarray:
    """Held-out procedural street scene ``seed`` (H, W, 3) uint8 at the config's resolution.

    The scene :func:`edgemoe.models.train.evaluate` scores as held-out scene
    ``seed`` (split ``val`` of :class:`~edgemoe.models.data.ProceduralScenes`), so
    the shipped checkpoint's maps of it are meaningful.
    """
    from edgemoe.models.data import HELDOUT_SEED, SPLITS, depth_far
    from edgemoe.models.scenes import render_scene

    seq = np.random.SeedSequence([HELDOUT_SEED, SPLITS.index("val"), seed])
    return render_scene(*cfg.image_size, seq, depth_far(cfg)).image
