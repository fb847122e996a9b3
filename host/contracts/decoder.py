"""Layout rules of the kernel's task decoder (issue 24): the one place they live.

The decoder (a task's ``pup`` head, docs/numerics.md "The task decoder's integer
datapath", golden's ``Golden.decode``) runs in the kernel after the backbone of a
call, image by image. This module states, for a config and a tiling, everything the
parameter header, the driver and the estimate must agree on:

* the stages, in golden's ``decode_stages`` order (``dec.norm``, ``dec.conv_0``,
  ``dec.up_1``, ``dec.conv_1``, ..., ``dec.logits``), their map shapes and formats;
* per convolution, its *bands*: rectangles of output pixels tiling the map row-major
  (as many whole map rows as the linear unit's ``num_tokens`` rows take, narrowed
  until the band's window fits the ring), ``k_tiles x o_tiles`` weight tiles each
  (each tap's input channels padded to whole input tiles, :func:`padded_channels`, so
  an input tile reads one tap of one pixel), a pass of ``max(rows, tile_words)``
  cycles; one linear-unit call per band and output-channel chunk
  (:func:`chunk_width`: the outputs land in ``x`` before they are stored); the
  weights stream once per band;
* per band, its window: the input rows and columns its 3x3 halo needs (and for a
  fused bilinear x2 the source rows and columns of the stencil), loaded into the
  *ring* in one buffer set's ``wide``: input row ``gy`` at ring row
  ``k = gy % ring_rows``, i.e. ``wide`` rows ``(k % RPS) * WC ..`` of column slot
  ``k // RPS`` (``WC`` the band's window width, ``RPS = num_tokens // WC`` for the
  widest window, slots of ``c_pad`` columns); conv_0 reads the token grid in place in
  ``h``;
* the DDR layout of the feature maps: two ping-pong maps in the scratch region
  (the decoder runs after the backbone, so the expert-major slots are free), each
  stored *chunk-planar* (:func:`map_words`): one plane per output-channel chunk,
  pixels row-major, each pixel's chunk padded to whole bus words;
* the output region of a decoding call (:func:`output_words`): per image the final
  tokens (as a call without the decoder returns them), then the logits (raw
  ``dec_out``, channels last, one chunk) or a debug stop's stage, chunk-planar
  (``dec.norm``: the grid's token rows); the debug-stop codes of the decoder's stages.

Every bilinear x2 is fused into the band load of the convolution that reads it: the DDR
map is the previous convolution's output at half size; a window row is the blend of its
two source rows (:func:`up_source_rows`), computed as it is loaded. Per image the
schedule is load band -> compute band -> store band; the kernel decodes two images at
once, one on each buffer set, one's band computing while the other's is stored and its
next window loaded (``scratch`` holds a pair of maps per set,
:func:`decoder_scratch_bytes`). A convolution between the first and the returned one
keeps a band's outputs on chip until its store (the first chunk in ``h``, the second in
``x``), so it has at most two chunks (checked). Where the plan allows (:func:`fusable`,
``DecoderPlan.fused``) the classifier runs inside the last convolution's bands, so a
call to the logits never stores that map. The ring places input row ``gy`` at ring row
``gy % ring_rows``, so a band as wide as the map keeps the rows its window shares with
the previous band's and loads only the rows below it (``Band.load_rows``,
``Band.read_words``); a narrower band loads its whole window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.tiling import Tiling, tiles
from edgemoe.models.config import ModelConfig

ALIGN = 64

#: Stage kinds.
NORM, CONV, UP, LOGITS = "norm", "conv", "up", "logits"


def _align(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


def pixel_words(cfg: ModelConfig, channels: int, t: Tiling, value_bytes: int = 4) -> int:
    """Bus words of one pixel of a chunk-planar map of ``channels`` (:func:`map_words`):
    each chunk's values whole bus words (32-bit as the kernel stores them;
    ``value_bytes`` for a what-if)."""
    word = t.axi_bits // 8
    return sum(-(-n * value_bytes // word) for _, n in chunks(cfg, channels, t))


def band_weight_words(cfg: ModelConfig, stage: Stage, t: Tiling) -> int:
    """Bus words of weights a band of ``stage`` streams: its weight tiles (once per band)
    and, per output chunk, that chunk's bias padded to whole output tiles (once per call,
    from a bus word: decoder.h ``dec_conv_call``)."""
    word = t.axi_bits // 8
    bias = sum(
        -(-tiles(n, t.lin_out) * t.lin_out * 2 // word) for _, n in chunks(cfg, stage.shape[2], t)
    )
    return stage.bands[0].weight_words + bias if stage.bands else 0


def tile_words(t: Tiling) -> int:
    """Bus words of one weight tile (``LIN_TILE_WORDS``: 16-bit weights)."""
    return 2 * t.lin_in * t.lin_out // (t.axi_bits // 8)


def up_source_rows(u: int, h_src: int) -> tuple[int, int]:
    """The two source rows of up-sampled row ``u`` (:func:`units.upsample2x`)."""
    i, a = divmod(u, 2)
    j = i - 1 if a == 0 else i + 1
    return i, min(max(j, 0), h_src - 1)


@dataclass(frozen=True)
class Band:
    """One band of a convolution: output rows ``[y0, y0 + rows)`` by columns
    ``[x0, x0 + cols)``, one linear-unit call per channel chunk (its pixels are the
    unit's rows, row-major).

    Attributes
    ----------
    in_rows : tuple[int, ...]
        DDR map rows (source rows, before any fused x2) the band's window needs.
    load_rows : tuple[int, ...]
        The window's rows (of the convolution's input map, after any fused x2) the band
        loads into the ring: all of them, but for a band as wide as the map after
        another of the same convolution, only those below the previous band's window
        (the ring keeps the rest).
    read_words, write_words, weight_words : int
        Bus words the band reads (its load rows: each a burst per chunk, or with a fused
        x2 its two source rows), writes (its output pixels) and streams as weights
        (every tile of the convolution, once per band).
    """

    y0: int
    x0: int
    rows: int
    cols: int
    in_rows: tuple[int, ...]
    load_rows: tuple[int, ...]
    read_words: int
    write_words: int
    weight_words: int

    @property
    def pixels(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class Stage:
    """One decoder stage (what its debug stop returns is ``(h, w, c)`` raw values).

    For a convolution, ``k``, ``relu``, ``in_shape`` (the map it convolves, after any
    fused x2), ``src_shape`` (the DDR map it reads), ``fused_up``, the linear-unit
    sizes (``K = k*k*C_in``, ``k_tiles``, ``o_tiles``) and its :class:`Band` list.
    ``dec.up_i`` stages are fused: their map exists only in the ring; a debug stop
    there has the kernel write the upsampled map instead of running ``conv_i``.
    """

    name: str
    kind: str
    code: int  # the debug_stop value ending a run after this stage
    shape: tuple[int, int, int]
    fmt: str  # profile format of the stage's values
    tensor: str = ""  # conv: "decoders.<task>.conv_<i>"
    k: int = 0
    relu: bool = False
    in_shape: tuple[int, int, int] = (0, 0, 0)
    src_shape: tuple[int, int, int] = (0, 0, 0)
    fused_up: bool = False
    K: int = 0
    k_tiles: int = 0
    o_tiles: int = 0
    bands: tuple[Band, ...] = ()
    src_map: int = -1  # ping-pong map read (0/1), -1: the on-chip token grid
    dst_map: int = -1  # ping-pong map written, -1: the output region
    ring_rps: int = 0  # window rows per column slot of the ring in wide
    ring_rows: int = 0  # window rows the ring holds: input row gy sits at gy % ring_rows

    @property
    def band_pixels(self) -> int:
        return self.bands[0].pixels if self.bands else 0

    def pass_cycles(self, t: Tiling) -> list[int]:
        """Cycles of each band's weight-tile passes (``max(rows, LIN_TILE_WORDS)`` each,
        ``k_tiles * o_tiles`` passes per band): the MAC-bound part of the stage."""
        tw = tile_words(t)
        return [self.k_tiles * self.o_tiles * max(b.pixels, tw) for b in self.bands]

    @property
    def macs(self) -> int:
        h, w, c = self.shape
        return h * w * c * self.K


@dataclass(frozen=True)
class DecoderPlan:
    """The decoder of one task (``stages`` empty where the task's head is not ``pup``).

    Attributes
    ----------
    map_offsets : tuple[int, int]
        Byte offsets of the two ping-pong feature maps in the scratch region.
    scratch_bytes : int
        Scratch one image's decoder needs (its two maps; the kernel decodes two images at
        once, :func:`decoder_scratch_bytes`).
    out_shape : tuple[int, int, int]
        The logits ``(h, w, C)``, raw ``dec_out``, pixels row-major, channels last, one
        32-bit word per value, pixel rows of ``pixel_words(C)`` bus words.
    out_words : int
        32-bit words per image of the logits in the output region.
    fused : bool
        The classifier runs inside the last convolution's bands (:func:`fusable`): a
        call that decodes to the logits neither stores that convolution's map nor
        loads it back; a debug stop at it or before runs every stage on its own.
    """

    task: str
    stages: tuple[Stage, ...]
    map_offsets: tuple[int, int]
    scratch_bytes: int
    out_shape: tuple[int, int, int]
    out_words: int
    fused: bool = False

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"task {self.task}: no decoder stage {name!r}")

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stages if s.kind in (CONV, LOGITS))


def tokens_stop_code(cfg: ModelConfig) -> int:
    """``debug_stop`` that returns the backbone's final tokens of a ``pup`` task (what
    ``debug_stop 0`` returns for a ``linear`` head): the code after the backbone's
    last (``2 + depth * 7 - 1``, hls_params.DEBUG_STAGES) one."""
    return 2 + cfg.depth * 7


def stage_names(cfg: ModelConfig, task: str | int) -> list[str]:
    """The decoder's stages of ``task`` in execution order (golden's ``decode_stages``
    returns this list); empty for a head that is not ``pup``."""
    spec = cfg.task_spec(cfg.task_names[cfg.task_id(task)]).head
    if spec.kind != "pup":
        return []
    out = ["dec.norm"]
    for i in range(spec.convs - 1):
        out += ([f"dec.up_{i}"] if i > 0 else []) + [f"dec.conv_{i}"]
    return out + ["dec.logits"]


def stop_code(cfg: ModelConfig, task: str | int, stage: str) -> int:
    """``debug_stop`` of a decoder stage: :func:`tokens_stop_code` + 1 + its index."""
    names = stage_names(cfg, task)
    if stage not in names:
        raise ConfigError(f"task {task}: no decoder stage {stage!r}")
    return tokens_stop_code(cfg) + 1 + names.index(stage)


def chunk_width(cfg: ModelConfig, t: Tiling) -> int:
    """Output channels of one linear-unit call of a convolution: the most whole output
    tiles that fit a row of the buffer ``x`` (``embed_dim`` values), where the call's
    outputs land before they are stored, and whose bias and pixel words start on bus
    words."""
    cw = (cfg.embed_dim // t.lin_out) * t.lin_out
    # a chunk's bias (16-bit) and its pixels' words (32-bit) start on whole bus words
    word = t.axi_bits // 8
    while cw > 0 and ((2 * cw) % word or (4 * cw) % word):
        cw -= t.lin_out
    if cw <= 0:
        raise ConfigError(
            f"embed_dim {cfg.embed_dim} is narrower than an output tile ({t.lin_out}): "
            "the decoder's outputs do not fit x"
        )
    return cw


def chunks(cfg: ModelConfig, channels: int, t: Tiling) -> list[tuple[int, int]]:
    """The channel chunks ``(first, width)`` of a map of ``channels``: one linear-unit
    call each per band, one plane each in DDR (:func:`map_words`)."""
    cw = chunk_width(cfg, t)
    return [(c0, min(cw, channels - c0)) for c0 in range(0, channels, cw)]


def _pad(n: int, t: Tiling) -> int:
    lanes = t.axi_bits // 32
    return -(-n // lanes) * lanes


def map_words(cfg: ModelConfig, shape: tuple[int, int, int], t: Tiling) -> int:
    """32-bit words of a map ``(h, w, c)`` stored chunk-planar: chunk ``k``'s plane
    holds every pixel row-major, each pixel its chunk's channels padded to whole bus
    words; the planes back to back in chunk order."""
    h, w, c = shape
    return h * w * sum(_pad(n, t) for _, n in chunks(cfg, c, t))


def pack_map(cfg: ModelConfig, values: np.ndarray, t: Tiling) -> np.ndarray:
    """A map ``(h, w, c)`` of raw values as its chunk-planar words (:func:`map_words`)."""
    h, w, c = values.shape
    planes = []
    for c0, n in chunks(cfg, c, t):
        plane = np.zeros((h * w, _pad(n, t)), dtype=np.int64)
        plane[:, :n] = values[:, :, c0 : c0 + n].reshape(h * w, n)
        planes.append(plane.reshape(-1))
    return np.concatenate(planes)


def unpack_map(
    cfg: ModelConfig, words: np.ndarray, shape: tuple[int, int, int], t: Tiling
) -> np.ndarray:
    """Inverse of :func:`pack_map`: the first :func:`map_words` words as ``(h, w, c)``."""
    h, w, c = shape
    out = np.empty((h, w, c), dtype=np.int64)
    at = 0
    for c0, n in chunks(cfg, c, t):
        pw = _pad(n, t)
        plane = np.asarray(words[at : at + h * w * pw], dtype=np.int64).reshape(h * w, pw)
        out[:, :, c0 : c0 + n] = plane[:, :n].reshape(h, w, n)
        at += h * w * pw
    return out


def padded_channels(c: int, t: Tiling) -> int:
    """A convolution's input channels per tap in its weight rows (whole input tiles),
    so each input tile of the linear unit reads one tap of one pixel."""
    return -(-c // t.lin_in) * t.lin_in


def wide_cols(cfg: ModelConfig) -> int:
    """Columns of a buffer set's ``wide`` (``WIDE_COLS``, config.h)."""
    return max(3 * cfg.embed_dim, cfg.mlp_hidden, cfg.expert_hidden)


def _window(
    y0: int, x0: int, rows: int, cols: int, h: int, w: int, halo: int
) -> tuple[int, int, int, int]:
    return max(0, y0 - halo), min(h, y0 + rows + halo), max(0, x0 - halo), min(w, x0 + cols + halo)


def window(stage: Stage, band: Band) -> tuple[int, int, int, int]:
    """A band's window ``(wy0, wy1, wx0, wx1)`` in its convolution's input map (after any
    fused x2): the band with its halo, clipped to the map."""
    h, w, _ = stage.in_shape
    return _window(band.y0, band.x0, band.rows, band.cols, h, w, stage.k // 2)


def _up_cols(wx0: int, wx1: int, w_src: int) -> tuple[int, int]:
    """Source columns ``[js0, js1)`` of up-sampled columns ``[wx0, wx1)``."""
    return max(0, (wx0 >> 1) - 1), min(w_src, ((wx1 - 1) >> 1) + 2)


def _fits(
    cfg: ModelConfig, rows: int, cols: int, h: int, w: int, k: int, fused: bool,
    w_src: int, c_in: int, t: Tiling,
) -> bool:  # fmt: skip
    """Whether a band's worst window fits the ring in ``wide`` (and, with a fused x2,
    its source rows' blend in ``x``)."""
    halo = k // 2
    wr, wc = min(h, rows + 2 * halo), min(w, cols + 2 * halo)
    n = cfg.num_tokens
    if wc > n:
        return False
    slots = wide_cols(cfg) // padded_channels(c_in, t)
    if (n // wc) * slots < wr:
        return False
    if fused:
        js0, js1 = _up_cols(0, wc, w_src)
        if (js1 - js0) * len(chunks(cfg, c_in, t)) > n:
            return False
    return True


def _bands(
    cfg: ModelConfig, h: int, w: int, k: int, fused: bool, h_src: int, w_src: int,
    c_in: int, c_out: int, weight_words: int, t: Tiling, from_grid: bool,
) -> tuple[tuple[Band, ...], int, int]:  # fmt: skip
    """Rectangular bands, row-major: as many whole map rows as the linear unit's rows
    (``num_tokens``) take, narrowed until the band's window fits the ring; and the ring's
    window rows per column slot and in all (0, 0 for the token grid)."""
    cap = cfg.num_tokens
    if from_grid:
        rows, cols = h, w  # conv_0: the whole token grid, read in place from h
    else:
        cols = min(w, cap)
        rows = max(1, min(h, cap // cols))
        while not _fits(cfg, rows, cols, h, w, k, fused, w_src, c_in, t):
            if rows > 1:
                rows -= 1
            elif cols > 1:
                cols -= 1
            else:
                raise ConfigError(
                    f"a {k}x{k} convolution over {h}x{w}x{c_in} does not fit the ring in wide"
                )
    halo = k // 2
    pw_in, pw_out = pixel_words(cfg, c_in, t), pixel_words(cfg, c_out, t)
    rps = 0 if from_grid else cfg.num_tokens // min(w, cols + 2 * halo)
    ring = rps * (wide_cols(cfg) // padded_channels(c_in, t))
    if h > 255 or ring > 255:
        raise ConfigError(
            f"a {h}-row map or a ring of {ring} rows: the kernel counts rows in 8 bits"
        )
    out = []
    loaded = 0  # the first input row below the previous full-width band's window
    for y0 in range(0, h, rows):
        for x0 in range(0, w, cols):
            r, c = min(rows, h - y0), min(cols, w - x0)
            wy0, wy1, wx0, wx1 = _window(y0, x0, r, c, h, w, halo)
            load = list(range(max(wy0, loaded) if c == w else wy0, wy1))
            loaded = wy1 if c == w else 0
            if fused:
                src = sorted({s for u in range(wy0, wy1) for s in up_source_rows(u, h_src)})
                js0, js1 = _up_cols(wx0, wx1, w_src)
                read = 2 * len(load) * (js1 - js0) * pw_in  # two source rows a window row
            else:
                src = list(range(wy0, wy1))
                read = 0 if from_grid else len(load) * (wx1 - wx0) * pw_in
            if from_grid:
                load = []
            out.append(
                Band(y0, x0, r, c, tuple(src), tuple(load), read, r * c * pw_out, weight_words)
            )
    return tuple(out), rps, ring


def decoder_plan(cfg: ModelConfig, task: str | int, t: Tiling) -> DecoderPlan:
    """The decoder plan of ``task`` for a build of tiling ``t`` (see the module doc)."""
    name = cfg.task_names[cfg.task_id(task)]
    spec = cfg.task_spec(name).head
    if spec.kind != "pup":
        return DecoderPlan(name, (), (0, 0), 0, (0, 0, 0), 0)
    if spec.num_conv == 4 and spec.align_corners:
        raise ConfigError(f"task {name}: the datapath's bilinear x2 is align_corners false")
    gh, gw = cfg.grid
    d = cfg.embed_dim
    tw = tile_words(t)
    stages: list[Stage] = [
        Stage("dec.norm", NORM, stop_code(cfg, name, "dec.norm"), (gh, gw, d), "act")
    ]
    h, w, c = gh, gw, d
    n = spec.convs
    src_map = -1
    stored: list[int] = []  # bytes of each convolution's map in scratch
    for i in range(n):
        last = i == n - 1
        k = spec.conv_kernel(i)
        c_out = cfg.task_channels(name) if last else spec.channels
        fused = i > 0 and spec.num_conv == 4 and not last
        h_src, w_src = h, w
        if fused:
            h, w = 2 * h, 2 * w
            stages.append(
                Stage(f"dec.up_{i}", UP, stop_code(cfg, name, f"dec.up_{i}"), (h, w, c), "dec_feat")
            )
        K = k * k * c
        if 0 < i < n - 1 and len(chunks(cfg, c_out, t)) > 2:
            raise ConfigError(
                f"task {name}: conv_{i}'s {c_out} channels take more than two calls of "
                f"{chunk_width(cfg, t)} a band; the kernel keeps a band's outputs in h and x "
                "until the side lane stores them (at most two)"
            )
        kt, ot = k * k * padded_channels(c, t) // t.lin_in, tiles(c_out, t.lin_out)
        dst_map = -1 if last else (0 if src_map != 0 else 1)
        sname = "dec.logits" if last else f"dec.conv_{i}"
        bands, rps, ring = _bands(
            cfg, h, w, k, fused, h_src, w_src, c, c_out, kt * ot * tw, t, i == 0
        )
        stages.append(
            Stage(
                sname,
                LOGITS if last else CONV,
                stop_code(cfg, name, sname),
                (h, w, c_out),
                "dec_out" if last else "dec_feat",
                f"decoders.{name}.conv_{i}",
                k,
                not last,
                (h, w, c),
                (h_src, w_src, c),
                fused,
                K,
                kt,
                ot,
                bands,
                src_map,
                dst_map,
                rps,
                ring,
            )
        )
        if not last:
            stored.append(4 * map_words(cfg, (h, w, c_out), t))
        src_map = dst_map
        c = c_out
    out_shape = (h, w, c)
    out_words = map_words(cfg, out_shape, t)
    fused = fusable(cfg, stages, t)
    # a fused plan never stores the last convolution's map in scratch (a call to the
    # logits keeps it on chip; a debug stop at it writes the output region)
    m = _align(max(stored[:-1] if fused else stored, default=0))
    return DecoderPlan(name, tuple(stages), (0, m), 2 * m, out_shape, out_words, fused)


def fusable(cfg: ModelConfig, stages: list[Stage], t: Tiling) -> bool:
    """Whether the kernel fuses the classifier into the last convolution's bands.

    Each band of that convolution then leaves its outputs on chip: its first output
    chunk (``chunk_width`` channels, whole input tiles) in ``h``, its second in ``x``;
    the second is copied into the ring slot of the band's first window row (which no
    later band reads), and the classifier's 1x1 call reads its input tiles from ``h``
    and then from that slot. That holds when the convolution is 3x3 over one-row,
    full-width bands with one window row per ring slot and at least three slots, its
    outputs are two chunks whose first is whole input tiles and fits ``h``, a slot
    holds the classifier's input channels, and the classifier's bands are the same.
    """
    convs = [s for s in stages if s.kind in (CONV, LOGITS)]
    if len(convs) < 3 or convs[-1].kind != LOGITS:
        return False
    last, cls = convs[-2], convs[-1]
    h, w, c_out = last.shape
    parts = chunks(cfg, c_out, t)
    return (
        last.src_map >= 0
        and last.k == 3
        and cls.k == 1
        and all(b.rows == 1 and b.cols == w for b in last.bands)
        and [(b.y0, b.rows, b.cols) for b in cls.bands] == [(b.y0, 1, w) for b in last.bands]
        and last.ring_rps == 1
        and last.ring_rows >= 3
        and len(parts) == 2
        and parts[0][1] % t.lin_in == 0
        and parts[0][1] <= cfg.embed_dim
        and padded_channels(last.in_shape[2], t) >= padded_channels(c_out, t)
    )


def decoder_plans(cfg: ModelConfig, t: Tiling) -> list[DecoderPlan]:
    """Every task's plan, in task-id order."""
    return [decoder_plan(cfg, i, t) for i in range(len(cfg.task_names))]


#: Images the kernel decodes at once: one on each on-chip buffer set, band by band in
#: turn (one's bands on the linear unit while the side lane moves the other's), each with
#: its own pair of maps.
DECODING_SETS = 2


def decoder_set_bytes(cfg: ModelConfig, t: Tiling) -> int:
    """Scratch one image's decoder needs, for any task (its pair of maps; the kernel's
    ``DEC_SET_BYTES``: buffer set b's maps follow set a's)."""
    return max((p.scratch_bytes for p in decoder_plans(cfg, t)), default=0)


def decoder_scratch_bytes(cfg: ModelConfig, t: Tiling) -> int:
    """Scratch the decoder needs: :data:`DECODING_SETS` images' maps (the host's scratch
    is the larger of this and the expert-major slots, :func:`scratch.scratch_bytes`)."""
    return DECODING_SETS * decoder_set_bytes(cfg, t)


def decodes(cfg: ModelConfig, task: str | int, debug_stop: int) -> bool:
    """Whether a call of ``task`` with ``debug_stop`` runs the task's decoder: a ``pup``
    task, with no stop or a decoder stage's."""
    if not stage_names(cfg, task):
        return False
    return debug_stop == 0 or debug_stop > tokens_stop_code(cfg)


def stage_words(cfg: ModelConfig, stage: Stage, t: Tiling) -> int:
    """32-bit words per image a decoder stage's output takes in the output region:
    ``dec.norm`` as token rows (the grid's pixels, ``embed_dim`` words each), every
    other stage's map chunk-planar (:func:`map_words`)."""
    if stage.kind == NORM:
        h, w, d = stage.shape
        return h * w * _pad(d, t)
    return map_words(cfg, stage.shape, t)


def tokens_words(cfg: ModelConfig, t: Tiling) -> int:
    """32-bit words of an image's final tokens at the start of its output region (a
    decoding call writes them, then the stage's output after them)."""
    return cfg.num_tokens * _pad(cfg.embed_dim, t)


def output_words(cfg: ModelConfig, task: str | int, debug_stop: int, t: Tiling) -> int:
    """32-bit words per image of a decoding call's output region (its stride): the
    final tokens (:func:`tokens_words`; expert-major calls also park each image's
    residual stream there), then the stage's output (:func:`stage_words`; the logits
    for ``debug_stop`` 0)."""
    plan = decoder_plan(cfg, task, t)
    stage = plan.stages[-1]
    if debug_stop:
        match = [s for s in plan.stages if s.code == debug_stop]
        if not match:
            raise ConfigError(f"task {plan.task}: no decoder stage has debug stop {debug_stop}")
        stage = match[0]
    return tokens_words(cfg, t) + stage_words(cfg, stage, t)


def window_rows(plan: DecoderPlan) -> int:
    """Rows of the largest band window of a plan (conv_0's is the token grid)."""
    most = 0
    for s in plan.stages:
        for b in s.bands:
            wy0, wy1, _, _ = window(s, b)
            most = max(most, s.shape[0] if s.name == "dec.conv_0" else wy1 - wy0)
    return most


def max_output_words(cfg: ModelConfig, task: str | int, t: Tiling) -> int:
    """The most :func:`output_words` any decoding call of ``task`` needs (0: no decoder)."""
    plan = decoder_plan(cfg, task, t)
    if not plan.stages:
        return 0
    return max(
        [output_words(cfg, task, 0, t)] + [output_words(cfg, task, s.code, t) for s in plan.stages]
    )
