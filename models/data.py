"""Training and evaluation data: procedural street scenes or preprocessed Cityscapes.

Both sources hand out the same :class:`Batch`: uint8 images ``(B, H, W, 3)`` (the
accelerator's pixels) and, per task, per-pixel labels — ``semseg`` as int64 class
ids in the config's classes with ``-1`` = ignore, ``depth`` as float32 with ``0`` =
invalid, in the source's :attr:`~SceneSource.depth_unit`: metres (``'m'``) for
procedural scenes, **disparity** (``'disparity'``, inverse depth, unitless as
MTAN scales it) for the Cityscapes layout, as M3ViT reads and evaluates it.

- :class:`ProceduralScenes` renders :func:`edgemoe.models.scenes.render_scene`;
  scene ``i`` of a split is a pure function of ``(seed, split, i)``, so the
  ``val`` split is held out from ``train`` by construction and a training run
  needs no data RNG state to resume.
- :class:`CityscapesNpy` reads the layout M3ViT and MTAN train on:
  ``{root}/{train,val}/image/{i}.npy`` (H×W×3 float in [0, 1]),
  ``label_7/{i}.npy`` (H×W, −1 or 255 = ignore), ``depth/{i}.npy`` (H×W×1 disparity,
  0 = invalid).

A broken dataset is a one-line :class:`~edgemoe.errors.DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from edgemoe.errors import DataError

from .config import ModelConfig
from .scenes import CATEGORIES, IGNORE, render_scene

SPLITS = ("train", "val")
PROCEDURAL = "procedural"
#: What ``depth`` labels hold: metres, or disparity (inverse depth).
DepthUnit = Literal["m", "disparity"]
#: How tables and colour bars name each depth unit. MTAN's disparity is, by all
#: appearances, Cityscapes' 16-bit disparity PNG divided by 2**16 (its range 0 … 0.4922
#: matches the PNGs' 0 … 32257; MTAN does not state it), i.e. about the pixel disparity
#: of the 2048-wide original divided by 256: a scale, not a physical unit.
DEPTH_UNIT_LABELS: dict[str, str] = {"m": "m", "disparity": "disparity (MTAN scale)"}
#: A semseg label M3ViT reads as ignore (it maps MTAN's −1 to it); read as −1 here.
VOID_255 = 255
_SPLIT_ID = {"train": 0, "val": 1}
#: Data seed of the held-out scenes: split ``val`` of :class:`ProceduralScenes` with it.
HELDOUT_SEED = 0
#: Depth that a config without a ``far`` value gets for the sky, in metres.
DEFAULT_FAR = 80.0


@dataclass
class Batch:
    """Images and per-pixel labels of a few scenes.

    Attributes
    ----------
    images : numpy.ndarray
        uint8 ``(B, H, W, 3)``.
    labels : dict[str, numpy.ndarray]
        Per task: ``semseg`` int64 ``(B, H, W)`` (−1 ignore), ``depth`` float32
        ``(B, H, W)`` in the source's ``depth_unit`` (0 invalid).
    """

    images: np.ndarray
    labels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.images)


class SceneSource(Protocol):
    """Where scenes come from: :class:`ProceduralScenes` or :class:`CityscapesNpy`."""

    name: str
    tasks: tuple[str, ...]
    #: Unit of the ``depth`` labels: ``'m'`` or ``'disparity'`` (the metrics follow it).
    depth_unit: DepthUnit

    def size(self, split: str) -> int | None:
        """Number of scenes in ``split`` (``None``: unbounded)."""
        ...

    def batch(self, split: str, indices: np.ndarray) -> Batch:
        """Scenes ``indices`` of ``split``."""
        ...


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")


def _semseg_map(cfg: ModelConfig) -> np.ndarray | None:
    """Lookup from :data:`CATEGORIES` ids (+1, void first) to the config's class ids."""
    if "semseg" not in cfg.task_names:
        return None
    classes = cfg.task_spec("semseg").classes
    missing = [c for c in classes if c not in CATEGORIES]
    if missing:
        raise DataError(
            f"procedural scenes label the Cityscapes categories ({', '.join(CATEGORIES)}); "
            f"config {cfg.name} has semseg class(es) {', '.join(missing)}"
        )
    lut = np.full(len(CATEGORIES) + 1, IGNORE, np.int64)
    for i, c in enumerate(classes):
        lut[CATEGORIES.index(c) + 1] = i
    return lut


def depth_far(cfg: ModelConfig) -> float:
    """The config's depth ``far`` value (the sky), or :data:`DEFAULT_FAR`."""
    if "depth" in cfg.task_names and cfg.task_spec("depth").far is not None:
        return float(cfg.task_spec("depth").far)
    return DEFAULT_FAR


class ProceduralScenes:
    """Seeded procedural street scenes at the config's resolution.

    Parameters
    ----------
    cfg : ModelConfig
        Gives the image size, the semseg class names (a subset of the 7
        Cityscapes categories; the others become ignore) and the depth ``far``.
    seed : int
        Data seed; scene ``i`` of ``split`` is seeded by ``(seed, split, i)``.
    """

    name = PROCEDURAL
    depth_unit: DepthUnit = "m"

    def __init__(self, cfg: ModelConfig, seed: int = 0) -> None:
        unknown = [t for t in cfg.task_names if t not in ("semseg", "depth")]
        if unknown:
            raise DataError(
                f"procedural scenes have labels for semseg and depth, not {', '.join(unknown)}"
            )
        self.cfg = cfg
        self.seed = seed
        self.tasks = cfg.task_names
        self._lut = _semseg_map(cfg)
        self._far = depth_far(cfg)

    def size(self, split: str) -> int | None:
        _check_split(split)
        return None

    def batch(self, split: str, indices: np.ndarray) -> Batch:
        _check_split(split)
        h, w = self.cfg.image_size
        scenes = [
            render_scene(
                h, w, np.random.SeedSequence([self.seed, _SPLIT_ID[split], int(i)]), self._far
            )
            for i in np.asarray(indices).ravel()
        ]
        labels: dict[str, np.ndarray] = {}
        if self._lut is not None:
            labels["semseg"] = np.stack([self._lut[s.semseg + 1] for s in scenes])
        if "depth" in self.tasks:
            labels["depth"] = np.stack([s.depth for s in scenes])
        return Batch(np.stack([s.image for s in scenes]), labels)


class CityscapesNpy:
    """Preprocessed Cityscapes (M3ViT/MTAN layout), checked against the config.

    Parameters
    ----------
    root : str or pathlib.Path
        Holds ``train/`` and ``val/``, each with ``image/``, ``label_7/`` and
        ``depth/`` of ``{i}.npy`` files numbered from 0; ``depth/`` holds
        disparity (MTAN's preprocessing of Cityscapes' disparity maps), 0 where
        there is none.
    cfg : ModelConfig
        Images must be ``cfg.image_size``; labels must be in ``-1 .. C-1``.

    Raises
    ------
    DataError
        A split or folder is missing, the folders disagree on the scenes, or
        the first scene has the wrong size or dtype (every scene is checked
        again when read).
    """

    _FOLDERS = {"image": "image", "semseg": "label_7", "depth": "depth"}
    depth_unit: DepthUnit = "disparity"

    def __init__(self, root: str | Path, cfg: ModelConfig) -> None:
        self.root = Path(root)
        self.name = str(root)
        self.cfg = cfg
        self.tasks = tuple(t for t in cfg.task_names if t in self._FOLDERS)
        unknown = [t for t in cfg.task_names if t not in self._FOLDERS]
        if unknown:
            raise DataError(f"{root}: the Cityscapes layout has no labels for {', '.join(unknown)}")
        if not self.root.is_dir():
            raise DataError(f"data directory not found: {root}")
        self._count: dict[str, int] = {}
        for split in SPLITS:
            self._count[split] = self._scan(split)
            self._read(split, 0)

    def _scan(self, split: str) -> int:
        base = self.root / split
        if not base.is_dir():
            raise DataError(f"{self.root}: missing split {split}/")
        counts = {}
        for key in ("image", *self.tasks):
            folder = base / self._FOLDERS[key]
            if not folder.is_dir():
                raise DataError(f"{self.root}: missing {split}/{self._FOLDERS[key]}/")
            names = sorted(p.stem for p in folder.glob("*.npy"))
            if not all(n.isdigit() for n in names):
                bad = next(n for n in names if not n.isdigit())
                raise DataError(f"{folder}: file {bad}.npy is not named by a scene index")
            ids = sorted(int(n) for n in names)
            if not ids or ids != list(range(len(ids))):
                raise DataError(
                    f"{folder}: expected files 0.npy … N-1.npy, found {len(ids)} file(s)"
                )
            counts[key] = len(ids)
        if len(set(counts.values())) != 1:
            listing = ", ".join(f"{self._FOLDERS[k]} {n}" for k, n in counts.items())
            raise DataError(f"{self.root}/{split}: folders disagree on the scene count ({listing})")
        return counts["image"]

    def size(self, split: str) -> int | None:
        _check_split(split)
        return self._count[split]

    def _load(self, split: str, key: str, i: int) -> np.ndarray:
        path = self.root / split / self._FOLDERS[key] / f"{i}.npy"
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {path}: {str(e).splitlines()[0]}") from None

    def _read(self, split: str, i: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        h, w = self.cfg.image_size
        where = f"{self.root}/{split}"
        img = self._load(split, "image", i)
        if img.dtype.kind != "f":
            raise DataError(f"{where}/image/{i}.npy: dtype {img.dtype}, expected float in [0, 1]")
        if img.shape != (h, w, 3):
            raise DataError(
                f"{where}/image/{i}.npy: shape {img.shape}, config {self.cfg.name} "
                f"needs ({h}, {w}, 3)"
            )
        if not np.isfinite(img).all() or img.min() < -1e-3 or img.max() > 1 + 1e-3:
            raise DataError(f"{where}/image/{i}.npy: values outside [0, 1]")
        labels: dict[str, np.ndarray] = {}
        if "semseg" in self.tasks:
            lab = self._load(split, "semseg", i)
            if lab.ndim == 3 and lab.shape[-1] == 1:
                lab = lab[..., 0]
            if lab.dtype.kind not in "iuf" or lab.shape != (h, w):
                raise DataError(
                    f"{where}/label_7/{i}.npy: {lab.dtype} {lab.shape}, expected ({h}, {w}) "
                    "class ids"
                )
            c = self.cfg.task_channels("semseg")
            if lab.dtype.kind == "f" and not np.array_equal(lab, np.round(lab)):
                raise DataError(f"{where}/label_7/{i}.npy: class ids must be whole numbers")
            lab = lab.astype(np.int64)
            lab[lab == VOID_255] = IGNORE  # M3ViT's ignore value, as its loader writes it
            if lab.min() < IGNORE or lab.max() >= c:
                raise DataError(
                    f"{where}/label_7/{i}.npy: class ids outside -1..{c - 1} (ignore: -1, 255)"
                )
            labels["semseg"] = lab
        if "depth" in self.tasks:
            dep = self._load(split, "depth", i)
            if dep.ndim == 3 and dep.shape[-1] == 1:
                dep = dep[..., 0]
            if dep.dtype.kind != "f" or dep.shape != (h, w):
                raise DataError(
                    f"{where}/depth/{i}.npy: {dep.dtype} {dep.shape}, expected ({h}, {w}, 1) float"
                )
            if not np.isfinite(dep).all() or dep.min() < 0:
                raise DataError(f"{where}/depth/{i}.npy: disparity must be finite and >= 0")
            labels["depth"] = dep.astype(np.float32)
        image = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        return image, labels

    def batch(self, split: str, indices: np.ndarray) -> Batch:
        _check_split(split)
        n = self._count[split]
        items = [self._read(split, int(i) % n) for i in np.asarray(indices).ravel()]
        labels = {t: np.stack([lab[t] for _, lab in items]) for t in self.tasks}
        return Batch(np.stack([img for img, _ in items]), labels)


def depth_in(unit: DepthUnit) -> str:
    """How a sentence says a depth unit: ``in m``, ``as disparity (MTAN scale)``."""
    return f"in {DEPTH_UNIT_LABELS[unit]}" if unit == "m" else f"as {DEPTH_UNIT_LABELS[unit]}"


def depth_unit_of(data: str | Path) -> DepthUnit:
    """The depth unit of data named as ``train --data`` names it (and its record keeps it):
    metres for ``'procedural'``, disparity for a directory in the Cityscapes layout."""
    return ProceduralScenes.depth_unit if str(data) == PROCEDURAL else CityscapesNpy.depth_unit


def trained_depth_unit(checkpoint: str | Path | None) -> DepthUnit | None:
    """The depth unit a checkpoint predicts: that of the data its training record names
    (``None``: no checkpoint, or no record beside it, e.g. one from M3ViT)."""
    from .shipped import read_record

    data = read_record(checkpoint).get("data") if checkpoint is not None else None
    return depth_unit_of(data) if data else None


def open_source(data: str | Path, cfg: ModelConfig, seed: int = 0) -> SceneSource:
    """``'procedural'`` or a directory in the preprocessed Cityscapes layout."""
    if str(data) == PROCEDURAL:
        return ProceduralScenes(cfg, seed)
    return CityscapesNpy(data, cfg)
