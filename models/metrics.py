"""Task metrics on per-pixel predictions (numpy; shared by training and ``edgemoe eval``).

Semseg: a confusion matrix over labelled pixels (label ``-1`` ignored) gives
per-class IoU, mIoU (mean over classes present in labels or predictions) and
pixel accuracy. Depth, on valid pixels only (label > 0): mean absolute error,
``abs_rel`` = mean |d − d*| / d*, RMSE and δ<1.25 = the fraction with
max(d/d*, d*/d) < 1.25 (predictions clamped to at least 1e-3 m for the ratio).
"""

from __future__ import annotations

import numpy as np

_MIN_DEPTH = 1e-3


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix ``[label, pred]`` of the labelled pixels (int64 ``(C, C)``)."""
    keep = label >= 0
    idx = label[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def semseg_metrics(conf: np.ndarray, class_names: tuple[str, ...]) -> dict:
    """mIoU, per-class IoU and pixel accuracy from a confusion matrix.

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
    total = conf.sum()
    return {
        "miou": float(np.mean(present)) if present else 0.0,
        "pixel_acc": float(tp.sum() / total) if total else 0.0,
        "iou": iou,
        "pixels": int(total),
    }


class DepthAccumulator:
    """Sums over valid pixels for :func:`depth_metrics`, batch by batch."""

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
