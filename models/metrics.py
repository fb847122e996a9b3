"""Task metrics on per-pixel predictions (numpy; shared by training and ``edgemoe eval``).

Semseg: a confusion matrix over labelled pixels (labels ``-1`` and ``255``
ignored, as M3ViT maps −1 to 255) gives per-class IoU, mIoU and pixel accuracy.
mIoU is the mean over classes present in labels or predictions, or with
``absent_as_zero`` M3ViT's mean over every class (an absent class counting 0,
its ``tp / max(tp + fp + fn, 1e-8)``).

Depth in metres (procedural scenes), on valid pixels only (label > 0): mean
absolute error, ``abs_rel`` = mean |d − d*| / d*, RMSE and δ<1.25 = the fraction
with max(d/d*, d*/d) < 1.25 (predictions clamped to at least 1e-3 m for the ratio).

Disparity (M3ViT's Cityscapes ``depth/``: inverse depth, 0 = invalid), as M3ViT
evaluates it on valid pixels (label ≠ 0), predictions ≤ 0 clamped to 1e-9: RMSE
= √mean (p − g)² and log-RMSE = √mean (ln g − ln p)², in disparity units.
"""

from __future__ import annotations

import numpy as np

_MIN_DEPTH = 1e-3


#: Labels that mark a pixel as unlabelled: the project's −1 and M3ViT's 255.
IGNORE_LABELS = (-1, 255)


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix ``[label, pred]`` of the labelled pixels (int64 ``(C, C)``).

    Labels in :data:`IGNORE_LABELS` are skipped; any other label outside
    ``0 .. C-1`` is a ``ValueError``.
    """
    label = np.asarray(label)
    keep = (label >= 0) & (label != 255)
    if (label[keep] >= num_classes).any():
        raise ValueError(f"labels outside 0..{num_classes - 1} (ignore: -1, 255)")
    idx = label[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def semseg_metrics(
    conf: np.ndarray, class_names: tuple[str, ...], *, absent_as_zero: bool = False
) -> dict:
    """mIoU, per-class IoU and pixel accuracy from a confusion matrix.

    Parameters
    ----------
    conf : numpy.ndarray
        :func:`confusion` (summed over images).
    class_names : tuple[str, ...]
        One name per class.
    absent_as_zero : bool
        M3ViT's mIoU: the mean over every class, one absent from labels and
        predictions counting 0 (default: such classes are left out).

    Returns
    -------
    dict
        ``miou``, ``pixel_acc``, ``iou`` (class name → IoU, ``None`` for a class
        absent from both labels and predictions), ``pixels``.
    """
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = {
        name: (float(tp[i] / union[i]) if union[i] > 0 else None)
        for i, name in enumerate(class_names)
    }
    present = [v for v in iou.values() if v is not None]
    if absent_as_zero:
        present = [v or 0.0 for v in iou.values()]
    total = conf.sum()
    return {
        "miou": float(np.mean(present)) if present else 0.0,
        "pixel_acc": float(tp.sum() / total) if total else 0.0,
        "iou": iou,
        "pixels": int(total),
    }


class DepthAccumulator:
    """Sums over valid pixels for :func:`depth_metrics`, batch by batch."""

    UNIT = "m"

    def __init__(self) -> None:
        self.n = 0
        self.abs = 0.0
        self.rel = 0.0
        self.sq = 0.0
        self.delta = 0

    def add(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add predictions and labels of the same shape (metres; label 0 = invalid)."""
        valid = label > 0
        d = pred[valid].astype(np.float64)
        g = label[valid].astype(np.float64)
        err = np.abs(d - g)
        ratio = np.maximum(np.maximum(d, _MIN_DEPTH) / g, g / np.maximum(d, _MIN_DEPTH))
        self.n += int(valid.sum())
        self.abs += float(err.sum())
        self.rel += float((err / g).sum())
        self.sq += float((err**2).sum())
        self.delta += int((ratio < 1.25).sum())

    def result(self) -> dict:
        """``abs_err`` (m), ``abs_rel``, ``rmse`` (m), ``delta1``, ``pixels``."""
        n = max(self.n, 1)
        return {
            "abs_err": self.abs / n,
            "abs_rel": self.rel / n,
            "rmse": float(np.sqrt(self.sq / n)),
            "delta1": self.delta / n,
            "pixels": self.n,
        }


def depth_metrics(pred: np.ndarray, label: np.ndarray) -> dict:
    """Depth metrics of one set of predictions (see :class:`DepthAccumulator`)."""
    acc = DepthAccumulator()
    acc.add(pred, label)
    return acc.result()


class DisparityAccumulator:
    """Sums over valid pixels for :func:`disparity_metrics`, batch by batch."""

    UNIT = "disparity"

    def __init__(self) -> None:
        self.n = 0
        self.sq = 0.0
        self.log_sq = 0.0

    def add(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add predicted and labelled disparity of the same shape (label 0 = invalid)."""
        valid = label != 0
        g = label[valid].astype(np.float64)
        p = np.maximum(pred[valid].astype(np.float64), 1e-9)
        self.n += int(valid.sum())
        self.sq += float(((p - g) ** 2).sum())
        self.log_sq += float(((np.log(g) - np.log(p)) ** 2).sum())

    def result(self) -> dict:
        """``rmse`` and ``log_rmse`` (in :attr:`UNIT`), ``pixels``."""
        n = max(self.n, 1)
        return {
            "rmse": float(np.sqrt(self.sq / n)),
            "log_rmse": float(np.sqrt(self.log_sq / n)),
            "pixels": self.n,
        }


def disparity_metrics(pred: np.ndarray, label: np.ndarray) -> dict:
    """Disparity metrics of one set of predictions (see :class:`DisparityAccumulator`)."""
    acc = DisparityAccumulator()
    acc.add(pred, label)
    return acc.result()
