"""The task decoder as the estimate counts it (ESTIMATES, not synthesis).

The plan is the kernel's decoder contract, ``edgemoe.host.contracts.decoder.decoder_plan``
(v1): its stages, bands (rectangles of output pixels), weight tiles (taps padded to
whole input tiles, ``k_tiles x o_tiles``), output chunks (:func:`~contracts.decoder.chunks`,
one linear-unit call per band and chunk) and DDR words (``Band.read_words`` /
``write_words`` / ``weight_words``). This module adds only what the cycle model
(:func:`edgemoe.host.estimate.perf.decoder_stages`) needs beyond those words, per band:
the burst runs of its loads and stores, the cycles of the fused bilinear x2 into the
ring, each chunk call's output channels and bias words; and the what-ifs
(:class:`Options`) that change them.

As built (v1): a band loads its window's rows into the ring (for a fused x2, two source
rows per window row, one burst each per chunk plane, then the blend into the ring
``gcd(LIN_OUT, LIN_IN)`` channels a cycle, decoder.h UP_LANES; a band as wide as the map
after another loads only the rows below the previous band's window, ``Band.load_rows``),
then per output chunk one linear-unit call, then the chunks' stores (one burst per band
row). The load and the stores are the side lane's turn between two of an image's bands,
the calls the linear lane's; two images decode at once, so one's calls run beside the
other's loads and stores (:func:`edgemoe.host.estimate.perf.decoder_stages`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.decoder import (
    CONV,
    LOGITS,
    Band,
    DecoderPlan,
    Stage,
    band_weight_words,
    chunk_width,
    chunks,
    decoder_plan,
    pixel_words,
)
from edgemoe.host.contracts.decoder import window as contract_window
from edgemoe.host.contracts.tiling import Tiling, tiles
from edgemoe.models.config import ModelConfig

#: Bytes of a weight or bias value in DDR (16-bit in every profile).
WEIGHT_BYTES = 2


@dataclass(frozen=True)
class Options:
    """What-ifs on the decoder as built (every field at its default: the kernel v1).

    Attributes
    ----------
    io_overlaps : bool
        As built: the two buffer sets decode two images at once, one image's band on the
        linear unit beside the side lane's store and load for the other's (False: every
        image's band loads, calls and stores one after the other, the kernel before).
    ring_reuse : bool
        A band keeps the window rows it shares with the band before it in the same
        column strip and loads only the new ones (with the contract's row-major bands
        this helps only bands as wide as the map). As built (``Band.load_rows``); False
        is the kernel before it.
    fuse_classifier : bool
        The classifier runs on the last convolution's band on chip: that map is neither
        stored nor loaded back. As built where the plan fuses it
        (``DecoderPlan.fused``: the band's chunks in ``h`` and ``x``, the second copied
        into the ring, counted); True forces it for a plan that does not (a what-if:
        the buffer the band's outputs need beyond ``x`` is then not counted).
    fmap_bytes : int
        Bytes of a feature-map value or logit in DDR (4 as built: 32-bit lanes).
    mac_rate : int | None
        MACs a cycle of the linear unit (None: ``LIN_IN x LIN_OUT``); the passes are
        shortened in proportion.
    """

    io_overlaps: bool = True
    ring_reuse: bool = True
    fuse_classifier: bool = False
    fmap_bytes: int = 4
    mac_rate: int | None = None


BUILT = Options()


@dataclass(frozen=True)
class BandCost:
    """One band of a convolution as the cycle model reads it.

    Attributes
    ----------
    pixels : int
        Output pixels: the linear unit's rows in each of its calls.
    calls : tuple[int, ...]
        Output channels of each chunk call, in order.
    load_words, load_bursts : int
        Bus words and burst runs of the window load.
    blend_cycles, blend_runs : int
        Cycles of the fused x2 writing the window into the ring (``LIN_OUT`` channels
        a cycle per window pixel) and its pipelined loops (one per window row and
        chunk); for a fused classifier, its copy of the band's second chunk into the
        ring (one loop); 0 without either.
    store_words, store_bursts : int
        Bus words and burst runs of the outputs' stores (every chunk).
    weight_words : int
        Bus words of weight tiles (once per band) and biases (once per call).
    """

    pixels: int
    calls: tuple[int, ...]
    load_words: int
    load_bursts: int
    blend_cycles: int
    blend_runs: int
    store_words: int
    store_bursts: int
    weight_words: int


def pup_task(cfg: ModelConfig, task: str | None = None) -> str | None:
    """``task`` (checked to have a head the datapath decodes,
    :attr:`~edgemoe.models.config.HeadSpec.on_datapath`), or the config's first task
    with one; None when no task has (the light heads run on the host)."""
    if task is not None:
        head = cfg.task_spec(task).head
        if not head.on_datapath:
            raise ConfigError(
                f"task {task}: the kernel decodes pup heads with the fixed x2 only (its head "
                f"is {head.kind}{', align_corners' if head.kind == 'pup' else ''})"
            )
        return task
    return next((s.name for s in cfg.task_specs if s.head.on_datapath), None)


def plan(cfg: ModelConfig, task: str, t: Tiling) -> DecoderPlan:
    """The kernel's decoder plan of ``task`` (:func:`pup_task` checks it first)."""
    return decoder_plan(cfg, pup_task(cfg, task), t)


def window(stage: Stage, band: Band) -> tuple[int, int]:
    """Rows and columns of a band's window (its 3x3 halo clipped to the map, after any
    fused x2): the contract's window, whose words ``Band.read_words`` counts."""
    wy0, wy1, wx0, wx1 = contract_window(stage, band)
    return wy1 - wy0, wx1 - wx0


def band_costs(
    cfg: ModelConfig,
    stage: Stage,
    t: Tiling,
    opts: Options = BUILT,
    fused_next: bool = False,
    fused: bool = False,
) -> list[BandCost]:
    """The :class:`BandCost` of each band of a convolution ``stage`` of the contract.

    ``fused_next``: the stage is the last convolution before a fused classifier (its map
    is not stored). ``fused``: the stage is that classifier as the kernel builds it
    (``DecoderPlan.fused``: its input on chip, the copy of the second chunk counted).
    """
    if stage.kind not in (CONV, LOGITS):
        return []
    _, _, c_in = stage.in_shape
    c_out = stage.shape[2]
    in_chunks = len(chunks(cfg, c_in, t))
    # words per pixel as built (32-bit values) and with the what-if's value width
    pw_in, pw_in_opt = (pixel_words(cfg, c_in, t, b) for b in (4, opts.fmap_bytes))
    pw_out, pw_out_opt = (pixel_words(cfg, c_out, t, b) for b in (4, opts.fmap_bytes))
    out_chunks = [n for _, n in chunks(cfg, c_out, t)]
    weights = band_weight_words(cfg, stage, t)  # the contract's: tiles and chunk biases
    from_grid = stage.src_map < 0
    skip_load = stage.kind == LOGITS and (opts.fuse_classifier or fused)
    up = math.gcd(t.lin_out, t.lin_in)  # decoder.h UP_LANES: the x2's and the copy's lanes
    copied = c_in - chunk_width(cfg, t) if fused else 0  # the second chunk, x -> ring
    out: list[BandCost] = []
    per_row = 0
    for b in stage.bands:
        wr, wc = window(stage, b)
        # as built the contract's load rows; without ring reuse the whole window
        new = len(b.load_rows) if opts.ring_reuse else wr
        if from_grid or skip_load:
            load, bursts, blend, runs = 0, 0, 0, 0
            if copied > 0:  # dec_fuse_classifier's copy: a pixel's groups a cycle each
                blend, runs = b.pixels * tiles(copied, up), 1
        else:
            # the contract's words: every loaded row the same (its source rows' columns);
            # a band that loads no row keeps the last band's (same geometry)
            if b.load_rows:
                if b.read_words % len(b.load_rows):
                    raise ConfigError(f"{stage.name}: band words not whole window rows")
                per_row = b.read_words // len(b.load_rows) * pw_in_opt // pw_in
            load = new * per_row
            reads = 2 if stage.fused_up else 1  # a fused x2 reads two source rows a row
            bursts = new * reads * in_chunks
            groups = sum(tiles(n, up) for _, n in chunks(cfg, c_in, t))
            blend = new * wc * groups if stage.fused_up else 0
            runs = new * in_chunks if stage.fused_up else 0
        if fused_next:
            store, s_bursts = 0, 0
        else:
            store = b.write_words * pw_out_opt // pw_out
            s_bursts = b.rows * len(out_chunks)
        out.append(
            BandCost(
                b.pixels,
                tuple(out_chunks),
                load,
                bursts,
                blend,
                runs,
                store,
                s_bursts,
                weights,
            )
        )
    return out


def conv_stages(p: DecoderPlan) -> list[Stage]:
    """The plan's convolutions and classifier, in order."""
    return [s for s in p.stages if s.kind in (CONV, LOGITS)]
