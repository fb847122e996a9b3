"""The routing rule every numpy implementation shares (docs/configs.md).

Top-k over the gate's experts with ties going to the lower expert index,
defined by ranks so that it never depends on a sort's tie order: expert ``e``
ranks ``#{j : l_j > l_e} + #{j < e : l_j == l_e}`` and is chosen iff its rank
is below ``k``. The torch reference (:func:`edgemoe.models.m3vit.topk_mask`)
and the HLS kernel (``route_tokens``) implement the same rule.
"""

from __future__ import annotations

import numpy as np


def topk_mask(logits: np.ndarray, k: int) -> np.ndarray:
    """Bool mask of the chosen experts over the last axis, exactly ``k`` per row."""
    logits = np.asarray(logits)
    v = logits[..., :, None]
    u = logits[..., None, :]
    e = logits.shape[-1]
    lower = np.tri(e, e, -1, dtype=bool)  # lower[e_, j] = j < e_
    rank = (u > v).sum(-1) + ((u == v) & lower).sum(-1)
    return rank < k
