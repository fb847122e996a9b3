"""The task decoder's plan as the estimate models it (ESTIMATES, not synthesis).

M³ViT's ``pup`` decoder (docs/numerics.md "The task decoder's integer datapath",
``edgemoe.sim.golden.Golden.decode``) on the kernel: the final LayerNorm on the token
grid, each convolution as calls of the unified linear unit over bands of feature-map
pixels (im2col rows read from a ring of input map rows on chip), a bilinear ×2 before
convolutions 1, 2 and 3 of the four-convolution head, feature maps in DDR between
convolutions, the classifier's logits to DDR (DESIGN.md §2.6).

THIS IS THE ESTIMATE'S OWN PLAN (:func:`estimate_plan`), written before the kernel's
decoder contract (``edgemoe.host.contracts.decoder.decoder_plan``) existed: per stage the
linear-unit calls (pixels per call, ``K``, ``O``), the bands, the DDR bytes per band and
whether its DDR I/O overlaps compute. The cycle and resource model
(:mod:`edgemoe.host.estimate.perf`) reads only these fields, so pointing it at the
kernel's plan is a change here. What it assumes of the C++ it has not seen:

* a call covers at most ``NUM_TOKENS`` pixels (``linear.h linear_unit``'s accumulators are
  ``acc[NUM_TOKENS][LIN_OUT]``): a band is the most whole map rows that fit, else a part
  of a map row;
* the weights stream once per band (a pass per tile, max(pixels, LIN_TILE_WORDS) cycles);
* the ring of input map rows (band rows + k - 1) lives in one buffer set's ``wide`` banks
  when it fits (``NUM_TOKENS x WIDE_COLS`` values), else in a ring of its own
  (:attr:`DecoderStage.ring_values`, counted in BRAM by the resource model);
* the ×2 runs as the next convolution's band load: it reads the low-resolution rows from
  DDR once and writes the high-resolution rows into the ring (no ×2 map in DDR);
* feature maps and logits cross DDR as 32-bit values (:data:`FMAP_BYTES`), pixels
  row-major, channels last, so a band of whole map rows is one burst run;
* as built, a band's loads and stores do not overlap its compute (``io_overlaps``).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.tiling import Tiling, tiles
from edgemoe.models.config import ModelConfig

#: Bytes of one feature-map value or logit in DDR (dec_feat / dec_out in a 32-bit lane, as
#: the backbone's token rows: contracts.scratch.row_bytes).
FMAP_BYTES = 4
#: Bytes of a weight or bias value in DDR (``weight`` / ``bias`` are 16-bit in every
#: profile).
WEIGHT_BYTES = 2


@dataclass(frozen=True)
class DecoderStage:
    """One decoder stage of one task-image.

    Attributes
    ----------
    name : str
        golden's stage name (``dec.norm``, ``dec.up_i``, ``dec.conv_i``, ``dec.logits``).
    kind : str
        ``norm``, ``upsample``, ``conv`` or ``classifier``.
    h, w : int
        The output map.
    c_in, c_out : int
        Channels in and out.
    kernel : int
        Convolution side (3 or 1; 0 for norm and upsample).
    band_pixels : tuple[int, ...]
        Pixels of each band, in order: one linear-unit call per band (``rows`` of the
        call); for the ×2, the high-resolution pixels it writes into the ring per band.
    k, o : int
        The linear-unit call's input and output widths (``k·k·C_in``, ``C_out``).
    weight_bytes : int
        Weights and bias of one call (pre-tiled to whole LIN_IN x LIN_OUT tiles), read
        once per band.
    load_bytes, store_bytes : int
        Feature-map (or token) bytes read and written, whole stage.
    bursts : int
        Burst runs of those loads and stores (each pays the m_axi latency).
    macs : int
        Multiply-accumulates of the stage (im2col zeros included: the unit multiplies them).
    ring_values : int
        Values of the on-chip ring of input map rows the stage reads (0: none).
    io_overlaps : bool
        Loads and stores run beside the compute.
    """

    name: str
    kind: str
    h: int
    w: int
    c_in: int
    c_out: int
    kernel: int
    band_pixels: tuple[int, ...]
    k: int
    o: int
    weight_bytes: int
    load_bytes: int
    store_bytes: int
    bursts: int
    macs: int
    ring_values: int
    io_overlaps: bool = False

    @property
    def bands(self) -> int:
        return len(self.band_pixels)

    @property
    def ddr_bytes(self) -> int:
        return self.bands * self.weight_bytes + self.load_bytes + self.store_bytes


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


def call_weight_bytes(k: int, o: int, t: Tiling) -> int:
    """Bytes of one convolution's weights and bias as the linear unit streams them: whole
    LIN_IN x LIN_OUT tiles, the bias padded to whole output tiles and bus words."""
    word = t.axi_bits // 8
    w = tiles(k, t.lin_in) * tiles(o, t.lin_out) * t.lin_in * t.lin_out * WEIGHT_BYTES
    b = _ceil_to(tiles(o, t.lin_out) * t.lin_out * WEIGHT_BYTES, word)
    return w + b


def _bands(h: int, w: int, max_pixels: int) -> tuple[tuple[int, ...], int]:
    """Band pixels over an h x w map, and the map rows a band spans (1 when a band is
    part of a row)."""
    if w <= max_pixels:
        r = max(1, min(h, max_pixels // w))
        return tuple(min(r, h - y) * w for y in range(0, h, r)), r
    part = tuple(min(max_pixels, w - x) for x in range(0, w, max_pixels))
    return part * h, 1


def pup_task(cfg: ModelConfig, task: str | None = None) -> str | None:
    """``task`` (checked to have a ``pup`` head), or the config's first task with one;
    None when no task has (the light heads run on the host)."""
    if task is not None:
        spec = cfg.task_spec(task)
        if spec.head.kind != "pup":
            raise ConfigError(
                f"task {task}: the kernel decodes pup heads only (its head is {spec.head.kind})"
            )
        return task
    return next((s.name for s in cfg.task_specs if s.head.kind == "pup"), None)


def estimate_plan(
    cfg: ModelConfig,
    task: str,
    t: Tiling,
    fmap_bytes: int = FMAP_BYTES,
    io_overlaps: bool = False,
    fuse_classifier: bool = False,
) -> list[DecoderStage]:
    """The decoder's stages for one task-image of ``task`` (see the module docstring).

    ``fmap_bytes``, ``io_overlaps`` and ``fuse_classifier`` (the classifier applied to the
    last convolution's band on chip: no store of that map, no load back) are what-ifs;
    the defaults are the design the estimate assumes is built.
    """
    spec = cfg.task_spec(task)
    head = spec.head
    if head.kind != "pup":
        raise ConfigError(f"task {task}: the kernel decodes pup heads only")
    word = t.axi_bits // 8
    N, D = cfg.num_tokens, cfg.embed_dim
    h, w = cfg.grid
    out: list[DecoderStage] = []
    # the final LayerNorm on the patch tokens: gamma and beta, and the tokens (in DDR
    # after an expert-major call; the model adds their load there)
    ln = 2 * _ceil_to(WEIGHT_BYTES * D, word)
    out.append(DecoderStage("dec.norm", "norm", h, w, D, D, 0, (h * w,), 0, 0, ln, 0, 0, 0, 0, 0))
    c = D
    n = head.convs
    for i in range(n):
        last = i == n - 1
        kk = head.conv_kernel(i)
        c_out = spec.channels if last else head.channels
        if i > 0 and head.num_conv == 4 and not last:
            # the x2 feeding conv_i: low-resolution rows read once, written to the ring
            lo_h, lo_w = h, w
            h, w = 2 * h, 2 * w
            pixels, _ = _bands(h, w, N)
            read = lo_h * lo_w * c * fmap_bytes
            out.append(
                DecoderStage(
                    f"dec.up_{i}", "upsample", h, w, c, c, 0, pixels, 0, 0, 0, read, 0, lo_h, 0, 0
                )
            )
        pixels, rows = _bands(h, w, N)
        k_in = kk * kk * c
        ring = (rows + kk - 1) * w * c if kk > 1 else 0
        if last:
            kind, name = "classifier", "dec.logits"
            # its input is the previous convolution's map, back from DDR (unless fused)
            load = 0 if fuse_classifier else h * w * c * fmap_bytes
            store = sum(_ceil_to(p * c_out * fmap_bytes, word) for p in pixels)
            bursts = len(pixels) * (1 if load == 0 else 2)
        else:
            kind, name = "conv", f"dec.conv_{i}"
            load = 0  # the ring: from the norm (conv_0) or the x2 (see dec.up_i)
            store = 0 if (fuse_classifier and i == n - 2) else h * w * c_out * fmap_bytes
            bursts = len(pixels) if store else 0
        out.append(
            DecoderStage(
                name,
                kind,
                h,
                w,
                c,
                c_out,
                kk,
                pixels,
                k_in,
                c_out,
                call_weight_bytes(k_in, c_out, t),
                load,
                store,
                bursts,
                h * w * k_in * c_out,
                ring,
                io_overlaps,
            )
        )
        c = c_out
    return out


def ring_capacity(cfg: ModelConfig) -> int:
    """Values one buffer set's ``wide`` banks hold (``NUM_TOKENS x WIDE_COLS``)."""
    return cfg.num_tokens * max(3 * cfg.embed_dim, cfg.mlp_hidden, cfg.expert_hidden)
