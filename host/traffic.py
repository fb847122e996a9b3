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


def image_traffic(
    cfg: ModelConfig, profile: Profile, t: Tiling, used: Sequence[set[int]]
) -> dict[tuple[str, str, str], int]:
    """DDR bytes of one image by (layer, stage, bundle), in execution order.

    ``used`` gives, per MoE block, the experts that at least one token chose;
    expert stages are keyed ``expert{e}_fc1`` / ``expert{e}_fc2``. Reads and the
    one write (``output``/``write`` on ``gmem_output``) are told apart by stage.
    The call's header read (:data:`HEADER_READ`) is not included.
    """
    size = {e.name: e.nbytes for e in layout(cfg, profile, t)}
    D, N = cfg.embed_dim, cfg.num_tokens
    ln = 2 * _ceil_words(2 * D, t)  # gamma and beta

    def tensors(pre: str, names: tuple[str, ...]) -> int:
        return sum(size[f"{pre}.{n}"] for n in names)

    out: dict[tuple[str, str, str], int] = {
        ("embed", "load", "gmem_images"): cfg.num_patches * cfg.patch_dim,
        ("embed", "load", "gmem_weights"): N * _ceil_words(4 * D, t),  # token bias
        ("embed", "patch_embed", "gmem_weights"): size["patch.w"],
    }
    moe = iter(used)
    for i in range(cfg.depth):
        layer, pre = f"block{i}", f"blocks.{i}"
        out[(layer, "ln1", "gmem_weights")] = ln
        out[(layer, "qkv", "gmem_weights")] = tensors(pre, ("qkv.w", "qkv.b"))
        out[(layer, "proj", "gmem_weights")] = tensors(pre, ("proj.w", "proj.b"))
        out[(layer, "ln2", "gmem_weights")] = ln
        if cfg.is_moe(i):
            out[(layer, "gate", "gmem_weights")] = size[f"{pre}.gate.{cfg.task_names[0]}.w"]
            for e in sorted(next(moe)):
                ex = f"{pre}.experts.{e}"
                out[(layer, f"expert{e}_fc1", "gmem_weights")] = tensors(ex, ("fc1.w", "fc1.b"))
                out[(layer, f"expert{e}_fc2", "gmem_weights")] = tensors(ex, ("fc2.w", "fc2.b"))
        else:
            out[(layer, "fc1", "gmem_weights")] = tensors(pre, ("fc1.w", "fc1.b"))
            out[(layer, "fc2", "gmem_weights")] = tensors(pre, ("fc2.w", "fc2.b"))
    out[("output", "write", "gmem_output")] = N * _ceil_words(4 * D, t)
    return out


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
    bundles = [a.bundle for a in ARGS if a.kind == "ptr"]
    read = dict.fromkeys(bundles, 0)
    written = dict.fromkeys(bundles, 0)
    read["gmem_weights"] = HEADER_READ
    for per_image in used_experts:
        for (_, stage, bundle), n in image_traffic(cfg, profile, t, per_image).items():
            (written if stage == "write" else read)[bundle] += n
    return read, written
