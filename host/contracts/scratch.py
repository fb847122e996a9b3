"""Layout of the scratch buffer of the expert-major batched mode (docs/design.md).

A kernel call of ``num_images > 1`` (and no ``debug_stop``) runs its images in
groups of up to :data:`MAX_GROUP`. Inside a group, each image runs on chip up to
the routing of the next MoE block, then parks its state: the residual stream x
in its own output region (the final tokens overwrite it; rows of ``row`` bytes),
the rest in its scratch slot, so parking uses two ports side by side. The experts
then run expert-major over the whole group, each expert's weights read once per
:data:`~edgemoe.models.config.ModelConfig.num_tokens` queued tokens rather than
once per image; then every image resumes.

One scratch slot per image of a group, every region aligned to 64 bytes::

    h       N rows of ceil_w(4 D) bytes    LN2 output, the experts' input
    count   E words                        tokens routed to each expert
    token   E lists of N words             their token ids, ascending
    weight  E lists of N words             their gate weights (raw prob)

The kernel's offsets (``SCRATCH_*`` in the parameter header) come from here.
h is parked rather than recomputed from x at gather time because by then x
already holds the contributions of the experts with lower indices.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgemoe.host.contracts.decoder import decoder_scratch_bytes
from edgemoe.host.contracts.tiling import Tiling
from edgemoe.models.config import ModelConfig

#: The largest expert-major group: images whose experts run together (the on-chip table
#: of per-image expert counts). Not the batch: a kernel call takes up to MAX_IMAGES.
MAX_GROUP = 16
ALIGN = 64


def _align(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


def row_bytes(cfg: ModelConfig, t: Tiling) -> int:
    """One token row of 32-bit words, whole bus words."""
    w = t.axi_bits // 8
    return -(-4 * cfg.embed_dim // w) * w


@dataclass(frozen=True)
class ScratchLayout:
    """Byte offsets inside one image's slot, and the slot size."""

    row: int  # bytes from one token row to the next (also in the output region)
    h: int
    count: int
    token: int
    weight: int
    list_stride: int  # bytes from one expert's list to the next
    slot: int


def scratch_layout(cfg: ModelConfig, t: Tiling) -> ScratchLayout:
    n, e = cfg.num_tokens, cfg.num_experts
    rows = _align(n * row_bytes(cfg, t))
    lst = _align(4 * n)
    count = rows
    token = count + _align(4 * e)
    weight = token + e * lst
    return ScratchLayout(row_bytes(cfg, t), 0, count, token, weight, lst, _align(weight + e * lst))


def batched(cfg: ModelConfig, num_images: int, debug_stop: int = 0) -> bool:
    """Whether a call runs expert-major (the kernel's own rule)."""
    return num_images > 1 and debug_stop == 0 and bool(cfg.moe_blocks)


def scratch_bytes(cfg: ModelConfig, t: Tiling, max_images: int) -> int:
    """Scratch a caller must provide for calls of up to ``max_images`` images: the
    expert-major slots, or the task decoders' two feature maps if larger (the decoder
    runs after the backbone, so they share the buffer)."""
    slots = scratch_layout(cfg, t).slot * max(1, min(max_images, MAX_GROUP))
    return max(slots, decoder_scratch_bytes(cfg, t))
