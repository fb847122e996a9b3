"""DDR traffic of one kernel call, in closed form (DESIGN.md §4.5, §6).

Bytes per m_axi bundle for a whole run (``debug_stop = 0``)::

    weights  = 32                                  header, once per call
             + B * [ N * ceil_w(4 D)               token bias, row by row
                   + |patch.w|                     pre-tiled, once
                   + sum over blocks of
                       4 * ceil_w(2 D)             LN1 and LN2 gamma, beta
                     + |qkv.w| + |qkv.b| + |proj.w| + |proj.b|
                     + dense: |fc1.w| + |fc1.b| + |fc2.w| + |fc2.b|
                     + MoE:   |gate.w| + sum over USED experts e of
                              |fc1.w| + |fc1.b| + |fc2.w| + |fc2.b| ]
    images   = B * patches * 3 * p * p             uint8, once
    output   = B * N * ceil_w(4 D)                 written once, 32-bit words
    scratch  = 0

``|t|`` is a tensor's stored size in the bundle (pre-tiled, padded to whole
tiles: edgemoe.host.bundle.layout) and ``ceil_w`` rounds up to whole bus words.
Every weight crosses DDR once per image; an expert no token chose is never read;
K and V are swept once per block of ``P`` queries from on-chip buffers, so they
add no DDR traffic. The C-sim counts the same bytes (tested equal).
"""

from __future__ import annotations

from collections.abc import Sequence

from edgemoe.models.config import ModelConfig

from .bundle import layout
from .kernel import ARGS
from .profile import Profile
from .tiling import Tiling

HEADER_READ = 32


def _ceil_words(nbytes: int, t: Tiling) -> int:
    w = t.axi_bits // 8
    return -(-nbytes // w) * w


def ddr_bytes(
    cfg: ModelConfig,
    profile: Profile,
    t: Tiling,
    used_experts: Sequence[Sequence[set[int]]],
) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes read and written per bundle for one call over ``len(used_experts)`` images.

    Parameters
    ----------
    used_experts : per image, per MoE block (in block order), the set of experts
        that at least one token chose.

    Returns
    -------
    read, written : dict bundle name -> bytes
    """
    size = {e.name: e.nbytes for e in layout(cfg, profile, t)}
    D, N = cfg.embed_dim, cfg.num_tokens
    bundles = [a.bundle for a in ARGS if a.kind == "ptr"]
    read = dict.fromkeys(bundles, 0)
    written = dict.fromkeys(bundles, 0)
    read["gmem_weights"] = HEADER_READ
    for per_image in used_experts:
        w = N * _ceil_words(4 * D, t) + size["patch.w"]
        moe = iter(per_image)
        for i in range(cfg.depth):
            pre = f"blocks.{i}"
            w += 4 * _ceil_words(2 * D, t)
            w += sum(size[f"{pre}.{n}"] for n in ("qkv.w", "qkv.b", "proj.w", "proj.b"))
            if cfg.is_moe(i):
                w += size[f"{pre}.gate.{cfg.task_names[0]}.w"]
                for e in next(moe):
                    w += sum(
                        size[f"{pre}.experts.{e}.{n}"] for n in ("fc1.w", "fc1.b", "fc2.w", "fc2.b")
                    )
            else:
                w += sum(size[f"{pre}.{n}"] for n in ("fc1.w", "fc1.b", "fc2.w", "fc2.b"))
        read["gmem_weights"] += w
        read["gmem_images"] += cfg.num_patches * cfg.patch_dim
        written["gmem_output"] += N * _ceil_words(4 * D, t)
    return read, written
