"""Layout rules of the kernel's task decoder (issue 24): the one place they live.

The decoder (a task's ``pup`` head, docs/numerics.md "The task decoder's integer
datapath", golden's ``Golden.decode``) runs in the kernel after the backbone of a
call, image by image. This module states, for a config and a tiling, everything the
parameter header, the driver and the estimate must agree on:

* the stages, in golden's ``decode_stages`` order (``dec.norm``, ``dec.conv_0``,
  ``dec.up_1``, ``dec.conv_1``, ..., ``dec.logits``), their map shapes and formats;
* per convolution, the linear-unit calls: one call per *band* of output pixels
  (at most ``num_tokens`` output pixels, the linear unit's rows, spread evenly;
  :data:`MIN_BAND_PIXELS` is what keeps a pass MAC-bound), ``k_tiles x o_tiles``
  weight tiles each, a pass of ``max(rows, tile_words)`` cycles; the weights stream
  once per band;
* per band, the input map rows it needs (the 3x3 halo, and for a fused bilinear x2
  the source rows of its stencil), the rows it loads new (the ring keeps the rows
  the previous band already loaded) and the DDR words it reads and writes;
* the DDR layout of the feature maps: two ping-pong maps in the scratch region
  (the decoder runs after the backbone, so the expert-major slots are free), each
  pixel a row of 32-bit words padded to whole bus words, pixels row-major;
* the output layout (raw ``dec_out`` logits, channels last) and the debug-stop
  codes of the decoder's stages.

Version 1 of the plan (this module) fuses every bilinear x2 into the band load of
the convolution that reads it: the DDR map is the previous convolution's output at
half size, and the upsampled rows exist only in the on-chip ring. The serial
schedule is load band -> compute band -> store band; the estimate counts the three
one after the other unless it models the overlap itself.

Status: the kernel does not implement this plan yet (issue 24, step "HLS"); the
plan is the contract the header, the estimate and the kernel are written against.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.tiling import Tiling, tiles
from edgemoe.models.config import ModelConfig

#: A band should keep the linear unit's pass at least one weight tile long (a pass
#: lasts ``max(rows, LIN_TILE_WORDS)`` cycles): 96 in the default 32x24 build.
MIN_BAND_PIXELS = 96
#: The linear unit's rows are buffer rows: at most ``num_tokens`` of the config (the
#: backbone's row count), checked by :func:`decoder_plan`.
WORD_BYTES_VALUE = 4  # one map value per 32-bit word (as the token rows)
ALIGN = 64

#: Stage kinds.
NORM, CONV, UP, LOGITS = "norm", "conv", "up", "logits"


def _align(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


def pixel_words(channels: int, t: Tiling) -> int:
    """Bus words of one map pixel in DDR (32-bit values, whole bus words)."""
    per = t.axi_bits // 32
    return -(-channels // per)


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
    """One linear-unit call of a convolution: output pixels ``[p0, p1)`` (row-major).

    Attributes
    ----------
    in_rows : tuple[int, ...]
        DDR map rows (source rows, before any fused x2) the band's window needs.
    new_rows : tuple[int, ...]
        Those not held in the ring from the previous band: the rows loaded.
    read_words, write_words, weight_words : int
        Bus words the band reads (new map rows), writes (its output pixels) and
        streams as weights (every tile of the convolution, once per band).
    """

    p0: int
    p1: int
    pixels: int
    in_rows: tuple[int, ...]
    new_rows: tuple[int, ...]
    read_words: int
    write_words: int
    weight_words: int


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
        Scratch the decoder needs (one image at a time).
    out_shape : tuple[int, int, int]
        The logits ``(h, w, C)``, raw ``dec_out``, pixels row-major, channels last, one
        32-bit word per value, pixel rows of ``pixel_words(C)`` bus words.
    out_words : int
        32-bit words per image of the logits in the output region.
    """

    task: str
    stages: tuple[Stage, ...]
    map_offsets: tuple[int, int]
    scratch_bytes: int
    out_shape: tuple[int, int, int]
    out_words: int

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


def _bands(
    h: int, w: int, k: int, fused: bool, h_src: int, w_src: int, c_in: int, c_out: int,
    weight_words: int, t: Tiling, cap: int,
) -> tuple[Band, ...]:  # fmt: skip
    """Bands of ``cap`` output pixels at most (the linear unit's rows), spread evenly;
    a band may start and end inside a map row."""
    total = h * w
    nb = -(-total // cap)
    size = -(-total // nb)
    held: set[int] = set()
    out = []
    halo = k // 2
    for p0 in range(0, total, size):
        p1 = min(total, p0 + size)
        need = [u for u in range(p0 // w - halo, (p1 - 1) // w + halo + 1) if 0 <= u < h]
        if fused:
            src = sorted({s for u in need for s in up_source_rows(u, h_src)})
        else:
            src = need
        new = [s for s in src if s not in held]
        held = set(src)
        out.append(
            Band(
                p0,
                p1,
                p1 - p0,
                tuple(src),
                tuple(new),
                len(new) * w_src * pixel_words(c_in, t),
                (p1 - p0) * pixel_words(c_out, t),
                weight_words,
            )
        )
    return tuple(out)


def decoder_plan(cfg: ModelConfig, task: str | int, t: Tiling) -> DecoderPlan:
    """The decoder plan of ``task`` for a build of tiling ``t`` (see the module doc)."""
    name = cfg.task_names[cfg.task_id(task)]
    spec = cfg.task_spec(name).head
    if spec.kind != "pup":
        return DecoderPlan(name, (), (0, 0), 0, (0, 0, 0), 0)
    if spec.num_conv == 4 and spec.align_corners:
        raise ConfigError(f"task {name}: the datapath's bilinear x2 is align_corners false")
    cap = cfg.num_tokens
    gh, gw = cfg.grid
    d = cfg.embed_dim
    tw = tile_words(t)
    stages: list[Stage] = [
        Stage("dec.norm", NORM, stop_code(cfg, name, "dec.norm"), (gh, gw, d), "act")
    ]
    h, w, c = gh, gw, d
    n = spec.convs
    src_map = -1
    largest = 0
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
        kt, ot = tiles(K, t.lin_in), tiles(c_out, t.lin_out)
        dst_map = -1 if last else (0 if src_map != 0 else 1)
        sname = "dec.logits" if last else f"dec.conv_{i}"
        bands = _bands(h, w, k, fused, h_src, w_src, c, c_out, kt * ot * tw, t, cap)
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
            )
        )
        if not last:
            largest = max(largest, h * w * pixel_words(c_out, t) * (t.axi_bits // 8))
        src_map = dst_map
        c = c_out
    m = _align(largest)
    out_shape = (h, w, c)
    out_words = h * w * pixel_words(c, t) * (t.axi_bits // 32)
    return DecoderPlan(name, tuple(stages), (0, m), 2 * m, out_shape, out_words)


def decoder_plans(cfg: ModelConfig, t: Tiling) -> list[DecoderPlan]:
    """Every task's plan, in task-id order."""
    return [decoder_plan(cfg, i, t) for i in range(len(cfg.task_names))]


def decoder_scratch_bytes(cfg: ModelConfig, t: Tiling) -> int:
    """Scratch the decoder of any task needs (the host's scratch is the larger of this
    and the expert-major slots, :func:`scratch.scratch_bytes`)."""
    return max((p.scratch_bytes for p in decoder_plans(cfg, t)), default=0)
