"""Images a user gives the CLI and the Python API: files, PIL images and arrays, as RGB uint8.

One rule for all of them (:func:`image_pixels`): 16-bit and float modes scaled to
8 bits, grayscale/palette/alpha converted to RGB, the config's size reached by
``stretch``, ``crop`` or ``pad`` (``--fit``) — each with a notice, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.models.config import ModelConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class ImageError(EdgeMoeError):
    """An input image that cannot be read or used."""


@dataclass
class InputImage:
    """One image to run.

    Attributes
    ----------
    name : str
        Stem of the output files.
    source : str
        The path given, or ``"sample scene"``.
    pixels : uint8 (H, W, 3)
        At the config's resolution.
    notices : list[str]
        What was done to it (mode conversion, resize).
    """

    name: str
    source: str
    pixels: np.ndarray
    notices: list[str] = field(default_factory=list)


FITS = ("stretch", "crop", "pad")


def _to_8bit(img, what: str, notices: list[str]):
    """16-bit, 32-bit and float modes scaled to 8 bits (with a notice), as Pillow "L"."""
    from PIL import Image

    a = np.asarray(img)
    if img.mode.startswith("I;16") or (img.mode == "I" and a.min() >= 0 and a.max() <= 65535):
        scaled = np.round(a.astype(np.float64) / 257.0)
        how = "16-bit: scaled to 8 bits (value / 257)"
    else:
        a = a.astype(np.float64)
        finite = a[np.isfinite(a)]
        if finite.size == 0:
            raise ImageError(f"{what}: no finite pixel values ({img.mode})")
        lo, hi = float(finite.min()), float(finite.max())
        if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
            scaled, how = a * 255.0, "float in [0, 1]: scaled to 8 bits (value x 255)"
        else:
            span = hi - lo if hi > lo else 1.0
            scaled = (a - lo) / span * 255.0
            how = f"{img.mode} values {lo:g}..{hi:g}: stretched to 8 bits"
    notices.append(f"{what} is {img.mode} ({how}), converted to RGB")
    pixels = np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "L").convert("RGB")


def _fit(img, size: tuple[int, int], fit: str, what: str, cfg: ModelConfig, notices: list[str]):
    """Resize an RGB image to ``size`` (W, H) by ``fit``, saying what changed."""
    from PIL import Image

    W, H = size
    w, h = img.size
    change = f"{what} is {w}x{h} (WxH)"  # config names give HxW: say which
    if fit == "stretch":
        aspect = "" if w * H == h * W else " (aspect ratio changed: --fit crop or pad keeps it)"
        notices.append(f"{change}, stretched to {W}x{H} for {cfg.name}{aspect}")
        return img.resize((W, H), Image.Resampling.BILINEAR)
    scale = max(W / w, H / h) if fit == "crop" else min(W / w, H / h)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = img.resize((sw, sh), Image.Resampling.BILINEAR)
    if fit == "crop":
        x0, y0 = (sw - W) // 2, (sh - H) // 2
        notices.append(
            f"{change}, scaled to {sw}x{sh} and cropped to the central {W}x{H} for {cfg.name}"
        )
        return scaled.crop((x0, y0, x0 + W, y0 + H))
    canvas = Image.new("RGB", (W, H))
    canvas.paste(scaled, ((W - sw) // 2, (H - sh) // 2))
    notices.append(f"{change}, scaled to {sw}x{sh} and padded (black) to {W}x{H} for {cfg.name}")
    return canvas


def image_pixels(
    img,
    cfg: ModelConfig,
    what: str,
    notices: list[str],
    *,
    resize: bool = True,
    fit: str = "stretch",
    refuse_hint: str = "resize it first",
) -> np.ndarray:
    """A PIL image as RGB uint8 at the config's size, by the rules of :func:`load_image`.

    Parameters
    ----------
    img : PIL.Image.Image
        Any mode, any size.
    cfg : ModelConfig
        Gives the size.
    what : str
        How messages name the image (``image street.png``).
    notices : list[str]
        Receives what was done to the image.
    resize, fit
        As for :func:`load_image`.
    refuse_hint : str
        The advice of the error when ``resize`` is False and the size differs.
    """
    H, W = cfg.image_size
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img, what, notices)
    elif img.mode != "RGB":
        notices.append(f"{what} is {img.mode}, converted to RGB")
        img = img.convert("RGB")
    if img.size != (W, H):
        if not resize:
            raise ImageError(
                f"{what} is {img.size[0]}x{img.size[1]} (WxH), config {cfg.name} "
                f"wants {W}x{H} ({refuse_hint})"
            )
        img = _fit(img, (W, H), fit, what, cfg, notices)
    return np.asarray(img, dtype=np.uint8).copy()


def load_image(
    path: str | Path, cfg: ModelConfig, resize: bool = True, fit: str = "stretch"
) -> InputImage:
    """Read an image file as RGB uint8 at the config's resolution.

    Grayscale, palette and alpha images are converted to RGB with a notice;
    16-bit, 32-bit and float images are scaled to 8 bits first, with a notice.
    An image of another size is resized with a notice that says when the aspect
    ratio changes -- ``fit`` ``stretch`` (bilinear, to the exact size), ``crop``
    (scale to cover, central crop) or ``pad`` (scale to fit, black borders) --
    or refused when ``resize`` is False.

    Raises
    ------
    ImageError
        Missing or unreadable file, not an image, wrong size with ``resize=False``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    notices: list[str] = []
    try:
        with Image.open(path) as im:
            im.load()
            pixels = image_pixels(
                im, cfg, f"image {path}", notices, resize=resize, fit=fit,
                refuse_hint="drop --no-resize to resize it",
            )  # fmt: skip
    except FileNotFoundError:
        raise ImageError(f"image {path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"image {path}: is a directory") from None
    except UnidentifiedImageError:
        raise ImageError(f"image {path}: not an image (Pillow cannot identify it)") from None
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        raise ImageError(f"image {path}: cannot read it ({why})") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"image {path}: {e}") from None
    return InputImage(path.stem, str(path), pixels, notices)


def load_image_folder(folder: str | Path, cfg: ModelConfig) -> np.ndarray:
    """Every image file in ``folder`` (sorted), RGB at the config's size.

    Raises
    ------
    ImageError
        Not a folder, or no image in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"image folder {folder}: not a directory")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ImageError(f"image folder {folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return np.stack([load_image(p, cfg).pixels for p in paths])
