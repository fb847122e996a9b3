"""DDR traffic of one kernel call, in closed form (DESIGN.md §4.5, §6).

Bytes per m_axi bundle for a whole run (``debug_stop = 0``)::

    weights  = 32                                  header, once per call
             + ceil_w(2 * |scale table|)           binary points, once per call
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

for one image, or any debug stop (image-major). A call of more images runs
expert-major in groups (edgemoe.host.contracts.scratch): experts are read once per group
and ``NUM_TOKENS`` queued tokens, and images park in scratch (:func:`group_traffic`).
``|t|`` is a tensor's stored size in the bundle (pre-tiled, padded to whole
tiles: edgemoe.host.export.bundle.layout) and ``ceil_w`` rounds up to whole bus words.
Every weight crosses DDR once per image; an expert no token chose is never read;
K and V are swept once per block of ``P`` queries from on-chip buffers, so they
add no DDR traffic. The C-sim counts the same bytes (tested equal).
"""

from __future__ import annotations

from collections.abc import Sequence

from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.kernel import ARGS
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.scratch import MAX_GROUP, batched, row_bytes
from edgemoe.host.contracts.tiling import Tiling
from edgemoe.host.export.bundle import layout, scale_entries
from edgemoe.models.config import ModelConfig

HEADER_READ = 32
#: Stages whose bytes are writes; every other stage reads.
WRITE_STAGES = ("write", "park", "scatter")


def _ceil_words(nbytes: int, t: Tiling) -> int:
    w = t.axi_bits // 8
    return -(-nbytes // w) * w


def call_reads(cfg: ModelConfig, t: Tiling) -> int:
    """Weight-bundle bytes a call reads once, before any image: the header's first
    :data:`HEADER_READ` bytes and the scale table (one 16-bit word per weight tensor)."""
    return HEADER_READ + _ceil_words(2 * len(scale_entries(cfg)), t)


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


def group_traffic(
    cfg: ModelConfig, profile: Profile, t: Tiling, counts: Sequence[Sequence[Sequence[int]]]
) -> dict[tuple[str, str, str], int]:
    """DDR bytes of one expert-major group (contracts.scratch) by (layer, stage, bundle).

    ``counts[b][m][e]``: tokens image ``b`` routes to expert ``e`` at its ``m``-th MoE
    block. Per image, every stage but the experts costs what :func:`image_traffic` says;
    per MoE block the group adds::

        park     per image: x rows (to its output region), h rows, the counts and each
                 non-empty queue (token, weight) to scratch
        gather   the counts; per expert and image: its queue; per queued token: its
                 h row (scratch)
        merge    per queued token: its x row read (output region), its expert's scaled
                 output added
        scatter  per queued token: that x row written back
        resume   per image: x rows (output region); none after the last block, whose
                 experts leave the final tokens in the output regions (nor its write)
        experts  per expert with Q > 0 queued tokens in the group:
                 ceil(Q / N) x (|fc1.w| + |fc1.b| + |fc2.w| + |fc2.b|)
    """
    size = {e.name: e.nbytes for e in layout(cfg, profile, t)}
    N, E = cfg.num_tokens, cfg.num_experts
    row = row_bytes(cfg, t)
    out: dict[tuple[str, str, str], int] = {}

    def add(key: tuple[str, str, str], n: int) -> None:
        out[key] = out.get(key, 0) + n

    last_moe = cfg.is_moe(cfg.depth - 1)
    for img in counts:
        for k, n in image_traffic(cfg, profile, t, [set() for _ in img]).items():
            if not (last_moe and k[1] == "write"):
                add(k, n)
    for m, i in enumerate(b for b in range(cfg.depth) if cfg.is_moe(b)):
        layer, pre = f"block{i}", f"blocks.{i}"
        for img in counts:
            q = img[m]
            lists = sum(2 * _ceil_words(4 * n, t) for n in q if n)
            add((layer, "park", "gmem_output"), N * row)
            add((layer, "park", "gmem_scratch"), N * row + _ceil_words(4 * E, t) + lists)
            add((layer, "merge", "gmem_output"), sum(q) * row)
            add((layer, "gather", "gmem_scratch"), _ceil_words(4 * E, t) + lists + sum(q) * row)
            add((layer, "scatter", "gmem_output"), sum(q) * row)
            if i + 1 < cfg.depth:
                add((layer, "resume", "gmem_output"), N * row)
        for e in range(E):
            total = sum(img[m][e] for img in counts)
            if total:
                ex = f"{pre}.experts.{e}"
                chunks = -(-total // N)
                for fc in ("fc1", "fc2"):
                    add(
                        (layer, f"expert{e}_{fc}", "gmem_weights"),
                        chunks * (size[f"{ex}.{fc}.w"] + size[f"{ex}.{fc}.b"]),
                    )
    return out


def decoder_traffic(
    cfg: ModelConfig, t: Tiling, task: str | int, resume: bool
) -> dict[tuple[str, str, str], int]:
    """DDR bytes of one image's task decoder (the decoder contract's plan,
    :mod:`edgemoe.host.contracts.decoder`) by (stage, kind, bundle)::

        norm     2 * ceil_w(2 D)                    its gamma and beta
        conv_i   per band and output chunk: the chunk's weight tiles and its bias
                 (ceil_w(2 * its tiles' outputs)); per band: its window (the maps
                 port, the side lane's: the Band's read_words) and its outputs
                 (write_words: conv_0's through scratch, the linear lane's; the others'
                 through maps; the logits to the output region); with a fused
                 classifier (plan.fused) the last convolution writes nothing and the
                 classifier reads nothing
        resume   N * ceil_w(4 D) when the image's final tokens come back from its
                 output region (an expert-major call: the decoder runs past the last
                 block)
    """
    word = t.axi_bits // 8
    plan = dp.decoder_plan(cfg, task, t)
    out: dict[tuple[str, str, str], int] = {}

    def add(key: tuple[str, str, str], n: int) -> None:
        out[key] = out.get(key, 0) + n

    if resume:
        add(("dec.norm", "resume", "gmem_output"), cfg.num_tokens * row_bytes(cfg, t))
    add(("dec.norm", "norm", "gmem_weights"), 2 * _ceil_words(2 * cfg.embed_dim, t))
    convs = [s for s in plan.stages if s.bands]
    for s in convs:
        per_band = dp.band_weight_words(cfg, s, t) * word
        add((s.name, "conv", "gmem_weights"), per_band * len(s.bands))
        # a fused classifier (plan.fused) reads its input on chip, so the convolution
        # before it stores nothing
        if not (plan.fused and s.kind == dp.LOGITS):
            add((s.name, "window", "gmem_maps"), sum(b.read_words for b in s.bands) * word)
        if not (plan.fused and s is convs[-2]):
            dst = (
                "gmem_output"
                if s.kind == dp.LOGITS
                else "gmem_scratch"
                if s.src_map < 0  # conv_0: the linear lane stores it
                else "gmem_maps"
            )
            add((s.name, "write", dst), sum(b.write_words for b in s.bands) * word)
    return out


def ddr_bytes(
    cfg: ModelConfig,
    profile: Profile,
    t: Tiling,
    counts: Sequence[Sequence[Sequence[int]]],
    task: str | int | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes read and written per bundle by one whole call (``debug_stop = 0``) of
    ``task``: with a ``pup`` head, each image's decoder too (:func:`decoder_traffic`).

    Parameters
    ----------
    counts : per image, per MoE block (in block order), the tokens routed to each
        expert. One image runs image-major (:func:`image_traffic`), more run
        expert-major in groups of :data:`~edgemoe.host.contracts.scratch.MAX_GROUP`
        (:func:`group_traffic`).

    Returns
    -------
    read, written : dict bundle name -> bytes
    """
    bundles = [a.bundle for a in ARGS if a.kind == "ptr"]
    read = dict.fromkeys(bundles, 0)
    written = dict.fromkeys(bundles, 0)
    read["gmem_weights"] = call_reads(cfg, t)
    if batched(cfg, len(counts)):
        parts = [
            group_traffic(cfg, profile, t, counts[g : g + MAX_GROUP])
            for g in range(0, len(counts), MAX_GROUP)
        ]
    else:
        parts = [
            image_traffic(cfg, profile, t, [{e for e, n in enumerate(q) if n} for q in img])
            for img in counts
        ]
    if task is not None and dp.decodes(cfg, task, 0):
        resume = batched(cfg, len(counts)) and cfg.is_moe(cfg.depth - 1)
        parts += [decoder_traffic(cfg, t, task, resume) for _ in counts]
    for part in parts:
        for (_, stage, bundle), n in part.items():
            (written if stage in WRITE_STAGES else read)[bundle] += n
    return read, written
