"""Performance and resource model of the kernel (DESIGN.md §6). ESTIMATES, not synthesis.

Cycles come from the loop trip counts and the initiation intervals the HLS review
predicts for the fixed C++ (``hls/``; every pipelined loop at its target II), for one
call of ``batch`` images (one: image-major; more: expert-major,
edgemoe.host.contracts.scratch); DDR bytes per stage from the same bundle layout the
kernel reads (their sum equals the C-sim's counters: tested); the time of a stage is
the larger of its compute time and its DDR time when the stage streams its weights
while computing (prefetch), their sum when it does not. Row-at-a-time loops pay the
m_axi latency and the pipeline fill per row (:data:`ROW_OVERHEAD`). Resources are
counted operator by operator in :mod:`edgemoe.host.estimate.resources` (LUT, FF,
DSP48E2, BRAM36, URAM per unit, each line naming its C++ construct) and checked
against its fit limits; :func:`plausible_clock` gives the clock the utilisation makes
plausible.

The published Edge-MoE design (``edge-moe-published``) is modelled with the
same machinery and its documented structure: 16x16 linear unit, P = 4,
two-pass attention with the score matrix in DDR, 32x16-bit MACs at 2 DSPs
each, weights re-tiled on chip and not prefetched, activations in DDR.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from itertools import combinations

from edgemoe.host.contracts.decoder import DecoderPlan
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.scratch import MAX_GROUP, batched, row_bytes
from edgemoe.host.contracts.tiling import Tiling, tiles
from edgemoe.host.estimate.decoder import BUILT as DEC_BUILT
from edgemoe.host.estimate.decoder import WEIGHT_BYTES, band_costs, pup_task
from edgemoe.host.estimate.decoder import Options as DecOptions
from edgemoe.host.estimate.decoder import conv_stages as dec_conv_stages
from edgemoe.host.estimate.decoder import plan as dec_plan
from edgemoe.host.estimate.resources import (
    LIMITS,
    RESOURCES,
    Operators,
    bram36,
    line_dicts,
    lines,
    mult_dsps,
    operators,
)
from edgemoe.host.estimate.resources import multipliers as multipliers  # re-exported
from edgemoe.host.estimate.resources import table as unit_table
from edgemoe.host.estimate.traffic import call_reads, group_traffic, image_traffic
from edgemoe.host.export.hls_params import ATTN_INTERLEAVE, LIN_AHEAD, LIN_MIN_PASS, ln_lanes
from edgemoe.models.config import ModelConfig


@dataclass(frozen=True)
class Device:
    """What a target board's FPGA device and DDR offer the kernel (resources, bandwidth)."""

    name: str
    part: str
    dsp: int
    bram36: int
    uram: int
    lut: int
    ff: int
    ddr_gbps: float  # PS DDR peak, GB/s
    hp_port_bits: int = 128  # PL side of one HP port

    def ddr_bytes_per_cycle(self, clock_mhz: float) -> float:
        return self.ddr_gbps * 1e9 / (clock_mhz * 1e6)


DEVICES = {
    # PS DDR4 64-bit at 2133 MT/s on both boards (DESIGN.md §6)
    "zcu104": Device("zcu104", "xczu7ev-ffvc1156-2-e", 1728, 312, 96, 230_400, 460_800, 17.06),
    "zcu102": Device("zcu102", "xczu9eg-ffvb1156-2-e", 2520, 912, 0, 274_080, 548_160, 17.06),
}


@dataclass(frozen=True)
class Design:
    """The knobs of one accelerator build.

    Attributes
    ----------
    name : str
    tiling : Tiling
        LIN_IN x LIN_OUT, P, AXI word width.
    dsp_per_mac : int
        DSP48E2 per linear-unit MAC (1 when a 27x18 multiply holds it).
    weight_ports : int
        m_axi ports (HP ports) the weights stream through.
    prefetch : bool
        Next weight tile loads while the current one computes.
    two_pass_attention : bool
        Scores written to DDR and read back, exp evaluated twice (Edge-MoE).
    activations_in_ddr : bool
        Stage inputs/outputs cross DDR (Edge-MoE) instead of staying on chip.
    two_buffer_sets : bool
        Two on-chip buffer sets, so two images are in flight: one's attention runs beside
        the other's linear-lane work (the kernel's run_segment); Edge-MoE runs one stage
        at a time.
    expert_major : bool
        Has the expert-major batched mode (its queues and expert-chunk rows on chip); Edge-MoE
        runs one image per call.
    """

    name: str
    tiling: Tiling
    dsp_per_mac: int
    weight_ports: int = 1
    prefetch: bool = True
    two_pass_attention: bool = False
    activations_in_ddr: bool = False
    two_buffer_sets: bool = True
    expert_major: bool = True


# Pipeline depths (cycles from first input to first output), used once per loop.
DEPTH_MAC = 8  # multiply + adder tree of LIN_IN + accumulate
AXI_READ_LATENCY = 64  # cycles from an m_axi read request to its data (Vitis' default)
DEPTH_EPILOGUE = 6  # narrow, GELU, store
DEPTH_SOFTMAX = 20  # exp2, rescale, reciprocal
DEPTH_RSQRT = 16
DEPTH_ROUTE = 40  # max tree, exp2, reciprocal, ranks


#: The II each pipelined loop is modelled at, and what limits it (the loops as the
#: merged C++ writes them; hls/README.md "Pipelined loops"). In ``--json`` as ``loops``;
#: the cycle counts read the II from here (a burst's latency is :data:`ROW_OVERHEAD`).
LOOP_II = {
    "lin_pass": (1, "GELU_ROM copies split even / odd: 2 reads per rom_2p (F1); x: one "
                 "read + one write per bank (F4); per-row scalars once (F5); acc + dot, "
                 "one 47-bit add within LIN_MIN_PASS (F7); control a pass ahead (F8); "
                 "wtile RAW distance 9 (F6). Limit: the wtile WAR left to the scheduler"),
    "lin_fetch_burst": (1, "one burst per part: base fixed, length known; the ws FIFO"),
    "lin_load_tile_words": (1, "one bus word a cycle into the tile registers"),
    "lin_side_bases": (1, "one row base a cycle into two local arrays"),
    "lin_side_read_gather / _merge, lin_side_write_words": (
        1, "a burst of ROW_WORDS per row; the row loop around it is not pipelined, so a "
           "row costs ROW_WORDS + ROW_OVERHEAD cycles (~0.4 word a cycle, F12)"),
    "move_rows_gather / _merge_read / _merge_write": (
        1, "a burst per row; a merged row pays two bursts (read, then write)"),
    "load_scales_words, load_scales_entries": (1, "a burst, then one entry a cycle"),
    "attn_key": (1, "exp2 ROM halves per unit, one read each (F2); row state recurrence "
                 "within ATTN_L = 20"),
    "attn_load_queries": (2, "HEAD_DIM = 64 columns over 32 wide banks: 2 reads a bank"),
    "attn_first_key": (1, "K and V of a column share a bank: 2 reads on ram_2p"),
    "attn_store": (1, "a row in ATTN_FINISH_PARTS = 2 iterations of 32 columns: one h write "
                   "a bank, 32 multipliers (F17)"),
    "exp2_rom_fill_entries": (1, "one write per half a cycle (gone if inferred as ROM)"),
    "ln_rows_stats": (1, "12 lanes; x 2 phases, one read a bank; sums one adder each; "
                      "udiv_const chains pipelined (F10)"),
    "ln_rows_normalise": (1, "12 independent lanes; h one write a bank"),
    "moe_route_token": (1, "exp2 ROM halves per lane, one read each (F3); count[e] "
                        "registers"),
    "ddr_read_words, ddr_write_words": (1, "destinations partitioned >= the words per "
                                        "cycle (F15)"),
    "ddr_read_rows_words, ddr_write_rows_words (load, write_rows, resume)": (
        1, "one flat loop per block of rows: one burst, one latency per block (F13)"),
    "park_row_words, park_resume_words": (
        1, "one flat loop per image: one latency per image (F13)"),
    "park_queues (ddr_write_words)": (
        2, "4 queue entries a word from a 2-port queue memory (F15, left)"),
    "embed_cls, ddr_*_banked_words": (1, "one access per bank a cycle"),
    "dec_read_pixels_words": (1, "a burst per window row and chunk; one write a bank of "
                              "wide, x or h through the rotate network"),
    "dec_up_words": (1, "x and h two reads a bank (rows j, j'), wide one write a bank; "
                     "UP_LANES = 8 channels a cycle; no recurrence; also the fused "
                     "classifier's copy"),
    "dec_write_pixels_words, dec_store_norm_words": (
        1, "a burst per band row (and chunk); one read a bank of x, wide or h"),
}  # fmt: skip

#: attention.h ATTN_FINISH_PARTS: attn_store iterations per row.
ATTN_FINISH_PARTS = 2


def _ii(loop: str) -> int:
    """The II :data:`LOOP_II` models ``loop`` at."""
    return LOOP_II[loop][0] if loop in LOOP_II else LOOP_II[_LOOP_KEY[loop]][0]


#: Short names the cycle counts use for the LOOP_II rows with several loops.
_LOOP_KEY = {
    "park_queues": "park_queues (ddr_write_words)",
}


#: Cost of one burst beyond its words: the m_axi latency and the pipeline fill. Paid per
#: block of rows by the flat row loops (F13), per row by the side moves and move_rows
#: (F12: their row loop is not pipelined).
ROW_FILL = 4
ROW_OVERHEAD = AXI_READ_LATENCY + ROW_FILL
#: Cycles of one decoder step beyond its turns' work: the DATAFLOW region's start and
#: done handshakes and the turn's set-up (the band's window: a few 8-bit divisions). A
#: judgement, not a measured figure.
DEC_STEP_CYCLES = 32

_mult_dsps = mult_dsps


def dsp_per_mac(profile: Profile) -> int:
    """A DSP48E2 multiplies 27x18 signed: wider operands take two."""
    a, w = profile.act.width, profile.weight.width
    return 1 if (a <= 27 and w <= 18) or (a <= 18 and w <= 27) else 2


def our_design(profile: Profile, tiling: Tiling, weight_ports: int = 1) -> Design:
    """The kernel as built (``weight_ports=1``); more ports is a what-if: the weights
    striped over several m_axi bundles, which the four-pointer control contract
    (DESIGN.md §4.6) does not have."""
    name = "edgemoe" if weight_ports == 1 else f"edgemoe-whatif-{weight_ports}-weight-ports"
    return Design(name, tiling, dsp_per_mac(profile), weight_ports=weight_ports)


def published_design() -> Design:
    return Design(
        "edge-moe-published",
        Tiling(16, 16, 4, 256),
        dsp_per_mac=2,
        weight_ports=1,
        prefetch=False,
        two_pass_attention=True,
        activations_in_ddr=True,
        two_buffer_sets=False,
        expert_major=False,
    )


@dataclass
class Stage:
    """One stage of one layer: cycles, DDR bytes, time."""

    layer: str
    name: str
    compute_cycles: int
    ddr_bytes: int
    overlapped: bool
    hidden: bool = False  # bytes moved during other stages (they count the cycles)
    hidden_ms: float = 0.0  # time spent beside another stage (attention: two buffer sets)
    compute_ms: float = 0.0
    memory_ms: float = 0.0
    ms: float = 0.0

    @property
    def bound(self) -> str:
        if self.hidden:
            return "hidden"
        return "memory" if self.memory_ms > self.compute_ms else "compute"


@dataclass
class Estimate:
    config: str
    profile: str
    design: str
    board: str
    clock_mhz: float
    batch: int = 1  # images in the call
    stages: list[Stage] = field(default_factory=list)
    resources: dict = field(default_factory=dict)

    @property
    def call_ms(self) -> float:
        """The whole call: every image of the batch."""
        return sum(s.ms for s in self.stages)

    @property
    def latency_ms(self) -> float:
        """Per image: the call's time over its images (one image: its latency)."""
        return self.call_ms / self.batch

    @property
    def ddr_bytes(self) -> int:
        """Bytes of the whole call, every bundle."""
        return sum(s.ddr_bytes for s in self.stages)

    def per_layer(self) -> dict[str, dict[str, float]]:
        """ms per image spent in each layer: compute-bound time and DDR-bound excess."""
        out: dict[str, dict[str, float]] = {}
        for s in self.stages:
            d = out.setdefault(s.layer, {"compute_ms": 0.0, "memory_only_ms": 0.0, "ms": 0.0})
            d["ms"] += s.ms / self.batch
            d["compute_ms"] += min(s.ms, s.compute_ms) / self.batch
            d["memory_only_ms"] += max(0.0, s.ms - s.compute_ms) / self.batch
        return out

    def to_dict(self) -> dict:
        return {
            "estimate": True,
            "note": (
                "modelled from loop trip counts and bundle sizes; nothing was synthesised. "
                "latency_ms is per image: call_ms / batch. With two images in flight an "
                "attention stage's ms is the part its linear-lane partner does not cover "
                "(hidden_ms the rest)"
            ),
            "config": self.config,
            "profile": self.profile,
            "design": self.design,
            "board": self.board,
            "clock_mhz": self.clock_mhz,
            "batch": self.batch,
            "latency_ms": self.latency_ms,
            "call_ms": self.call_ms,
            "fps": 1e3 / self.latency_ms,
            "ddr_bytes_per_image": self.ddr_bytes / self.batch,
            "resources": self.resources,
            "fits": self.resources.get("fits"),
            "loops": {k: {"ii": ii, "rests_on": why} for k, (ii, why) in LOOP_II.items()},
            "per_layer": self.per_layer(),
            "stages": [{**asdict(s), "bound": s.bound} for s in self.stages],
        }


def _linear_cycles(
    d: Design,
    rows: int,
    k: int,
    o: int,
    first_ready: bool = False,
    chained: bool = False,
    side: int = 0,
) -> int:
    """linear_unit: one pipeline over the call's tiles, a pass per tile of
    max(rows, 8) cycles -- or max(rows, tile words) when the pass also streams in the tile
    two ahead (this call's, or with ``chained`` the next call's first two) -- filled and
    drained once per call (the m_axi read latency, the MACs, the epilogue). Before it: the
    first two tiles unless the previous call fetched them (``first_ready``), and the
    call's bias. ``side``: cycles of the token-row moves the call makes meanwhile on the
    output or scratch port (expert-major MoE: a bus word per cycle plus the per-row burst
    overhead); the pipeline runs until both are done."""
    t = d.tiling
    it, ot = tiles(k, t.lin_in), tiles(o, t.lin_out)
    if not d.prefetch:  # Edge-MoE: separate clear and drain passes per output tile
        return int(it * ot * (rows + DEPTH_MAC) + ot * (2 * rows + DEPTH_EPILOGUE))
    word = t.axi_bits // 8
    words = -(-t.lin_in * t.lin_out * 2 // (word * d.weight_ports))  # cycles per tile on the bus
    n = it * ot
    handoff = LIN_AHEAD if chained and n >= LIN_AHEAD else 0
    n_fetch = max(0, n - LIN_AHEAD) + handoff
    plain = max(rows, LIN_MIN_PASS)
    ii = _ii("lin_pass")
    passes = max(ii * (n_fetch * max(plain, words) + (n - n_fetch) * plain), side)
    upfront = 0 if first_ready else min(n, LIN_AHEAD) * words
    bias = -(-ot * t.lin_out * 2 // word)
    return int(passes + AXI_READ_LATENCY + DEPTH_MAC + DEPTH_EPILOGUE + upfront + bias)


def _stage_bytes(traffic: dict[tuple[str, str, str], int], layer: str, stage: str) -> int:
    """Bytes of one (layer, stage) of a traffic table, every bundle."""
    return sum(n for (ly, st, _), n in traffic.items() if (ly, st) == (layer, stage))


def balanced_counts(cfg: ModelConfig, used: int) -> list[int]:
    """Tokens per expert when ``N * k`` choices spread evenly over experts 0..used-1."""
    used = max(1, min(used, cfg.num_experts))
    q, r = divmod(cfg.num_tokens * cfg.top_k, used)
    return [q + (e < r) for e in range(used)] + [0] * (cfg.num_experts - used)


def estimate(
    cfg: ModelConfig,
    profile: Profile,
    design: Design,
    device: Device,
    clock_mhz: float = 300.0,
    used_experts: list[int] | None = None,
    batch: int = 1,
    counts: list[list[list[int]]] | None = None,
    gelu_rom: str = "bram",
) -> Estimate:
    """Estimate one kernel call of ``batch`` images of ``cfg`` on ``device``.

    Routing: ``counts[b][m][e]`` (tokens image ``b`` sends to expert ``e`` at its
    ``m``-th MoE block, e.g. from golden) when given, which also sets ``batch``;
    else every image spreads its ``N * k`` choices evenly over the first
    ``used_experts[m]`` experts (default: all of them, as 129 tokens x top-2 of 16
    experts give in practice). One image runs image-major; more run expert-major in
    groups (edgemoe.host.contracts.scratch): experts once per group and NUM_TOKENS queued
    tokens, images parked in between (serial, on the output and scratch ports), the
    expert chunks' rows moving during the expert calls. With more than one image, two are in
    flight and attention hides behind the other's linear lane (:func:`_two_buffer_sets`).
    """
    if counts is None:
        moe = sum(1 for i in range(cfg.depth) if cfg.is_moe(i))
        used = used_experts if used_experts is not None else [cfg.num_experts] * moe
        counts = [[balanced_counts(cfg, u) for u in used] for _ in range(max(1, batch))]
    call = _Call(cfg, profile, design, device, clock_mhz, len(counts))
    per_image = [call.image(img) for img in counts]
    if design.two_buffer_sets:
        group = MAX_GROUP if call.expert_major else call.batch
        for g in range(0, call.batch, group):
            parts = [_segments(st, call.expert_major) for st in per_image[g : g + group]]
            for segment in zip(*parts, strict=True):
                _two_buffer_sets(list(segment))
    if call.expert_major:
        for g in range(0, call.batch, MAX_GROUP):
            call.group(counts[g : g + MAX_GROUP])
    call.est.resources = resources(cfg, profile, design, device, gelu_rom)
    return call.est


class _Call:
    """The stages of one kernel call, appended in order to :attr:`est` (:func:`estimate`).

    Bandwidths in bytes per cycle: ``w_bpc`` the weights (at most the ports' and
    the DDR's), ``s_bpc`` the scratch port.
    """

    ACT_BYTES = 4  # activations in DDR (Edge-MoE's design), int32

    def __init__(
        self,
        cfg: ModelConfig,
        profile: Profile,
        design: Design,
        device: Device,
        clock_mhz: float,
        batch: int,
    ) -> None:
        self.cfg, self.profile, self.design, self.clock_mhz = cfg, profile, design, clock_mhz
        self.t = t = design.tiling
        self.batch = batch
        self.expert_major = batched(cfg, batch)
        self.moe_blocks = [i for i in range(cfg.depth) if cfg.is_moe(i)]
        self.word = t.axi_bits // 8
        port_bpc = min(t.axi_bits, device.hp_port_bits) / 8  # one m_axi port on one HP port
        ddr_bpc = device.ddr_bytes_per_cycle(clock_mhz)
        self.w_bpc = min(port_bpc * design.weight_ports, ddr_bpc)
        self.s_bpc = min(port_bpc, ddr_bpc)
        self.est = Estimate(cfg.name, profile.name, design.name, device.name, clock_mhz, batch)

    # ---- building blocks ----

    def add(
        self,
        layer: str,
        name: str,
        cycles: float,
        ddr: int,
        overlapped: bool = True,
        bpc: float = 0,
        hidden: bool = False,
    ) -> None:
        """A stage; ``hidden``: bytes that move during other stages' cycles (no time)."""
        s = Stage(layer, name, int(cycles), int(ddr), overlapped, hidden)
        s.compute_ms = s.compute_cycles / (self.clock_mhz * 1e3)
        if not hidden:
            s.memory_ms = s.ddr_bytes / ((bpc or self.w_bpc) * self.clock_mhz * 1e3)
        s.ms = max(s.compute_ms, s.memory_ms) if overlapped else s.compute_ms + s.memory_ms
        self.est.stages.append(s)

    def act_io(self, rows: int, cols_in: int, cols_out: int) -> int:
        """Activation bytes read and written in DDR (Edge-MoE's design only)."""
        if not self.design.activations_in_ddr:
            return 0
        return rows * (cols_in + cols_out) * self.ACT_BYTES

    def linear(
        self,
        layer: str,
        name: str,
        rows: float,
        k: int,
        o: int,
        ddr: int,
        first_ready: bool = False,
        chained: bool = False,
    ) -> None:
        cyc = _linear_cycles(self.design, math.ceil(rows), k, o, first_ready, chained)
        io = self.act_io(math.ceil(rows), k, o)
        # with prefetch the next tile streams in while this one computes
        self.add(layer, name, cyc, ddr + io, overlapped=self.design.prefetch)

    def ln_cycles(self, rows: int) -> int:
        D = self.cfg.embed_dim
        if self.design.activations_in_ddr:
            return rows * (2 * D + DEPTH_RSQRT)  # Edge-MoE: one element per cycle
        # layernorm_rows: two flat pipelines over the rows, each draining once
        ii = _ii("ln_rows_stats") + _ii("ln_rows_normalise")
        return ii * rows * tiles(D, ln_lanes(self.t)) + DEPTH_RSQRT + 2 * DEPTH_EPILOGUE

    # ---- one image ----

    def image(self, img: list[list[int]]) -> list[Stage]:
        """Every stage of one image; its experts too unless they run per group."""
        cfg, N, D = self.cfg, self.cfg.num_tokens, self.cfg.embed_dim
        first = len(self.est.stages)
        sets = [set() if self.expert_major else {e for e, n in enumerate(q) if n} for q in img]
        traffic = image_traffic(cfg, self.profile, self.t, sets)

        def tr(layer: str, stage: str) -> int:
            return _stage_bytes(traffic, layer, stage)

        # (the call's header check and scale table,) pixels, token bias, then the linear map
        header = 0 if self.est.stages else call_reads(cfg, self.t)
        load = (
            2
            + max(header - 32, 0) / self.word
            + cfg.num_patches * cfg.patch_dim / self.word
            + N * D * 4 / self.word
            # stages.h embed_load: the pixels and the token bias, one flat loop (one
            # burst) per block
            + 2 * ROW_OVERHEAD
        )
        self.add("embed", "load", load, header + tr("embed", "load"))
        self.linear(
            "embed", "patch_embed", cfg.num_patches, cfg.patch_dim, D, tr("embed", "patch_embed")
        )
        ln = self.ln_cycles(N)
        queues = iter(img)
        for i in range(cfg.depth):
            layer = f"block{i}"
            self.add(layer, "ln1", ln, tr(layer, "ln1") + self.act_io(N, D, D))
            self.linear(layer, "qkv", N, D, 3 * D, tr(layer, "qkv"), chained=True)
            self.attention(layer)
            self.linear(layer, "proj", N, D, D, tr(layer, "proj"), first_ready=True)
            self.add(layer, "ln2", ln, tr(layer, "ln2") + self.act_io(N, D, D))
            if cfg.is_moe(i):
                self.moe(layer, next(queues), tr)
            else:
                self.linear(layer, "fc1", N, D, cfg.mlp_hidden, tr(layer, "fc1"), chained=True)
                self.linear(layer, "fc2", N, cfg.mlp_hidden, D, tr(layer, "fc2"), first_ready=True)
        if not (self.expert_major and cfg.is_moe(cfg.depth - 1)):  # else the experts wrote it
            write = N * D * 4 / self.word + ROW_OVERHEAD  # stages.h write_rows: one block
            self.add("output", "write", write, tr("output", "write"))
        return self.est.stages[first:]

    def attention(self, layer: str) -> None:
        cfg, N, p = self.cfg, self.cfg.num_tokens, self.t.p
        heads, hd = cfg.num_heads, cfg.head_dim
        if self.design.two_pass_attention:
            blocks = tiles(N, p)
            # pass 1: scores to DDR; pass 2: read back, exp again, multiply by V
            cyc = 2 * heads * blocks * (N * hd / min(hd, 16) + p + DEPTH_SOFTMAX)
            ddr = 2 * heads * N * N * self.ACT_BYTES + self.act_io(
                N, 3 * cfg.embed_dim, cfg.embed_dim
            )
            self.add(layer, "attention", cyc, ddr, overlapped=False)
        else:
            # per sweep of ATTN_P x ATTN_L rows: load them (II 2: a row spans the column
            # banks twice), the first key, N keys of ATTN_L cycles, drain, store (II 2)
            rows = p * ATTN_INTERLEAVE
            sweep = (
                (_ii("attn_load_queries") + ATTN_FINISH_PARTS * _ii("attn_store")) * rows
                + _ii("attn_key") * ATTN_INTERLEAVE * (N + 1)
                + DEPTH_SOFTMAX
            )
            self.add(layer, "attention", heads * tiles(N, rows) * sweep, 0)

    def moe(self, layer: str, q: list[int], tr) -> None:
        """Gate and routing; the experts too when they run per image (image-major)."""
        cfg, N, D, E = self.cfg, self.cfg.num_tokens, self.cfg.embed_dim, self.cfg.num_experts
        self.linear(layer, "gate", N, D, E, tr(layer, "gate"))
        if self.design.activations_in_ddr:  # Edge-MoE: an expert per cycle, three passes
            self.add(layer, "route", N * 3 * E, 0)
        else:  # route_tokens: one token per cycle
            self.add(layer, "route", _ii("moe_route_token") * N + DEPTH_ROUTE, 0)
        if self.expert_major:
            return
        run = [e for e, n in enumerate(q) if n]  # ascending, each fetched ahead
        for e in run:
            fc1, fc2 = tr(layer, f"expert{e}_fc1"), tr(layer, f"expert{e}_fc2")
            h, more = cfg.expert_hidden, e != run[-1]
            self.linear(layer, "expert_fc1", q[e], D, h, fc1, e != run[0], True)
            self.linear(layer, "expert_fc2", q[e], h, D, fc2, True, more)

    # ---- one expert-major group ----

    def group(self, group: list[list[list[int]]]) -> None:
        """The expert-major part of a group: parking in scratch and the experts."""
        traffic = group_traffic(self.cfg, self.profile, self.t, group)
        for m, i in enumerate(self.moe_blocks):
            layer = f"block{i}"
            self.park(layer, traffic, [img[m] for img in group])
            self.experts(layer, traffic, self.chunks(group, m), len(group))

    def park(self, layer: str, traffic: dict, counts: list[list[int]]) -> None:
        """Parking sends x (output region) beside h and the queues (scratch) and takes the
        next image's x back on the read channel; only the first image's x comes back on
        its own. Serial. ``counts[b][e]``: tokens image b queued for expert e."""
        images = len(counts)
        park = _stage_bytes(traffic, layer, "park")
        bpc = self.s_bpc * park / traffic[(layer, "park", "gmem_scratch")]
        # park.h park_rows: one flat loop over the image's row words (one latency per
        # image, F13); park_queues: per used expert two bursts (tokens, weights), each
        # word of 4 entries at II 2 (its words beyond one a cycle add to the bytes' time)
        lanes = self.t.axi_bits // 32
        cyc = 0
        for q in counts:
            used = [n for n in q if n]
            words = 2 * sum(-(-n // lanes) for n in used)
            cyc += ROW_OVERHEAD + 2 * len(used) * ROW_OVERHEAD
            cyc += (_ii("park_queues") - 1) * words
        self.add(layer, "park", cyc, park, False, bpc)
        # the first image of each buffer set comes back on its own
        resume = _stage_bytes(traffic, layer, "resume")
        if resume:
            back = min(2, images) * ROW_OVERHEAD  # park.h resume_image: one block each
            self.add(layer, "resume", back, resume, False, self.s_bpc * images / min(2, images))

    def chunks(self, group: list[list[list[int]]], m: int) -> list[tuple[int, int]]:
        """The expert chunks (expert, rows): queued tokens, NUM_TOKENS at a time, ascending."""
        N = self.cfg.num_tokens
        out = []
        for e in range(self.cfg.num_experts):
            total = sum(img[m][e] for img in group)
            out += [(e, min(N, total - c)) for c in range(0, total, N)]
        return out

    def experts(
        self, layer: str, traffic: dict, chunks: list[tuple[int, int]], images: int
    ) -> None:
        D, h = self.cfg.embed_dim, self.cfg.expert_hidden
        row = row_bytes(self.cfg, self.t)
        row_words = row // self.word
        run = sorted({e for e, _ in chunks})
        # serial: the counts, each queue, the first chunk's h rows
        lists = traffic[(layer, "gather", "gmem_scratch")] - sum(r for _, r in chunks) * row
        # per row and per list (the counts, a token and a weight list per queue) a burst
        bursts = chunks[0][1] + images * (1 + 2 * self.cfg.num_experts)
        self.add(
            layer, "gather", bursts * ROW_OVERHEAD, lists + chunks[0][1] * row, False, self.s_bpc
        )
        # fc1 of chunk c merges chunk c - 1 (its scaled outputs added to x in the output
        # regions), fc2 of chunk c gathers chunk c + 1's h: a bus word per cycle beside the
        # weights, a burst per row
        cyc = {"fc1": 0, "fc2": 0}
        for c, (_, r) in enumerate(chunks):
            first, last = c == 0, c + 1 == len(chunks)
            # a burst per row (hls::burst_maxi or a per-row loop with a fixed base), each
            # paying the m_axi latency and the fill
            per_row = row_words + ROW_OVERHEAD
            merge = 0 if first else chunks[c - 1][1] * per_row
            gather = 0 if last else chunks[c + 1][1] * per_row
            cyc["fc1"] += _linear_cycles(self.design, r, D, h, not first, True, merge)
            cyc["fc2"] += _linear_cycles(self.design, r, h, D, True, not last, gather)
        for fc in cyc:
            ddr = sum(traffic[(layer, f"expert{e}_{fc}", "gmem_weights")] for e in run)
            self.add(layer, f"expert_{fc}", cyc[fc], ddr)
        hidden = (sum(r for _, r in chunks) - chunks[0][1]) * row  # h gathered meanwhile
        hidden += 2 * (sum(r for _, r in chunks) - chunks[-1][1]) * row  # x merged
        self.add(layer, "rows_moved", 0, hidden, hidden=True)
        # the last chunk's merge, on its own (linear.h move_rows): per row a read burst
        # into merged[], then a write burst
        n = chunks[-1][1]
        self.add(
            layer, "merge", n * 2 * (row_words + ROW_OVERHEAD), 2 * n * row, True, 2 * self.s_bpc
        )


def _segments(stages: list[Stage], parks: bool) -> list[list[list[Stage]]]:
    """One image's stages as segments (split after each routing when it ``parks``), each
    as phases: linear-lane stages, then [attention], then linear-lane stages, ..."""
    segments: list[list[list[Stage]]] = [[[]]]
    for s in stages:
        phases = segments[-1]
        if s.name == "attention":
            phases += [[s], []]
        else:
            phases[-1].append(s)
        if parks and s.name == "route":
            segments.append([[]])
    return [seg for seg in segments if seg != [[]]]


def _two_buffer_sets(images: list[list[list[Stage]]]) -> None:
    """Hide attention behind the other buffer set's linear lane, as the kernel's run_segment
    schedules it: images 0, 2, 4, ... in buffer set 0 and 1, 3, 5, ... in buffer set 1; step k gives
    the linear lane to buffer set k % 2 (its image's next linear phase, and when that ends the
    image, the set's next image up to its first attention) and the attention lane to
    the other (its image's next attention, if that is next). A step lasts as long as
    its longer lane, so an attention stage keeps only the time its linear partner does
    not cover. Parking and resuming (charged serially elsewhere) are not counted as
    cover: the estimate errs long."""
    sets = [images[0::2], images[1::2]]
    at = [[0, 0], [0, 0]]  # per buffer set: image, phase (even: linear, odd: attention)
    k = 0
    while any(at[s][0] < len(sets[s]) for s in (0, 1)):
        lin, att = k % 2, 1 - k % 2
        attending = None
        i, p = at[att]
        if i < len(sets[att]) and p % 2 == 1:
            attending = sets[att][i][p][0]
            at[att][1] += 1
        cover = 0.0
        i, p = at[lin]
        if i < len(sets[lin]) and p % 2 == 0:
            cover += sum(s.ms for s in sets[lin][i][p])
            p += 1
            if p == len(sets[lin][i]):  # the image is done: the set's next one
                i, p = i + 1, 0
                if i < len(sets[lin]):
                    cover += sum(s.ms for s in sets[lin][i][0])
                    p = 1
            at[lin] = [i, p]
        if attending is not None:
            attending.ms = max(0.0, attending.ms - cover)
            attending.hidden_ms = attending.compute_ms - attending.ms
        k += 1


def batch_curve(
    cfg: ModelConfig,
    profile: Profile,
    design: Design,
    device: Device,
    clock_mhz: float = 300.0,
    batches: tuple[int, ...] = (1, 2, 4, 8, 16),
    gelu_rom: str = "bram",
) -> list[dict]:
    """ESTIMATED ms per image and per call against the images per call."""
    out = []
    for b in batches:
        e = estimate(cfg, profile, design, device, clock_mhz, batch=b, gelu_rom=gelu_rom)
        out.append(
            {
                "batch": b,
                "ms_per_image": e.latency_ms,
                "call_ms": e.call_ms,
                "ddr_bytes_per_image": e.ddr_bytes / b,
            }
        )
    return out


#: The clock rule (judgement, see :func:`plausible_clock`): (utilisation above which,
#: MHz), first match wins; below every threshold the 300 MHz target.
CLOCK_RULE = ((0.85, 200.0), (0.70, 250.0))
CLOCK_RULE_TEXT = (
    "post-route clock judged plausible from the worst of LUT, DSP and BRAM36 utilisation: "
    "<= 70 % -> 300 MHz, > 70 % -> 250 MHz, > 85 % -> 200 MHz (judgement: routing "
    "congestion and long DSP/BRAM cascades grow with utilisation; no published AMD rule "
    "with these thresholds was found)"
)


def plausible_clock(utilisation: dict[str, float], target_mhz: float = 300.0) -> float:
    """The clock the utilisation makes plausible after place and route (:data:`CLOCK_RULE`),
    never above ``target_mhz``."""
    worst = max(utilisation[k] for k in ("lut", "dsp", "bram36"))
    for above, mhz in CLOCK_RULE:
        if worst > above:
            return min(mhz, target_mhz)
    return target_mhz


def _fit(util: dict[str, float]) -> dict:
    """The fit verdict of a utilisation: against LIMITS, and the clock it makes plausible."""
    over = [r for r in RESOURCES if util[r] > LIMITS[r]]
    return {
        "utilisation": {k: round(v, 4) for k, v in util.items()},
        "limits": dict(LIMITS),
        "over": over,
        "fits": not over,
        "fits_rule": ", ".join(f"{k.upper()} <= {100 * v:.0f} %" for k, v in LIMITS.items()),
        "plausible_clock_mhz": plausible_clock(util),
        "clock_rule": CLOCK_RULE_TEXT,
    }


def rotate_network_luts(cfg: ModelConfig, profile: Profile, t: Tiling) -> int:
    """LUTs of the bank rotate networks (banked.h bank_walk): the "rotate networks" unit
    of :func:`resources`, the selects and the one division per walk."""
    ops = operators(cfg, profile, t)
    return round(sum(ln.lut for ln in lines(cfg, profile, t, ops) if ln.unit == "rotate networks"))


def resources(
    cfg: ModelConfig,
    profile: Profile,
    design: Design,
    device: Device,
    gelu_rom: str = "bram",
    ops: Operators | None = None,
) -> dict:
    """LUT, FF, DSP48E2, BRAM36 and URAM, operator by operator (edgemoe.host.estimate.
    resources), per unit, against the device and the fit limits
    (:data:`~edgemoe.host.estimate.resources.LIMITS`)."""
    if design.two_pass_attention:
        return _published_resources(cfg, profile, design, device)
    ops = ops or operators(cfg, profile, design.tiling, gelu_rom)
    ls = lines(cfg, profile, design.tiling, ops, design.two_buffer_sets, device.uram > 0)
    by_unit = unit_table(ls)
    total = {r: sum(row[r] for row in by_unit.values()) for r in RESOURCES}
    budget = {
        "lut": device.lut,
        "ff": device.ff,
        "dsp": device.dsp,
        "bram36": device.bram36,
        "uram": device.uram,
    }
    util = {r: total[r] / budget[r] if budget[r] else float(total[r] > 0) for r in RESOURCES}
    return {
        "estimate": True,
        "dsp48e2": int(total["dsp"]),
        "dsp48e2_by_unit": {u: row["dsp"] for u, row in by_unit.items() if row["dsp"]},
        "bram36": round(total["bram36"], 1),
        "uram": int(total["uram"]),
        "lut_estimate": int(round(total["lut"])),
        "ff_estimate": int(round(total["ff"])),
        "bram36_axi_fifos": round(
            sum(ln.bram36 for ln in ls if ln.unit == "m_axi")
            + sum(ln.bram36 for ln in ls if ln.what.startswith("weight FIFO")),
            1,
        ),
        "by_unit": by_unit,
        "lines": line_dicts(ls),
        "operators": asdict(ops),
        "budget": budget,
        **_fit(util),
    }


def _published_resources(
    cfg: ModelConfig, profile: Profile, design: Design, device: Device
) -> dict:
    """Edge-MoE's published design: its MAC arrays, an allowance, its buffers, a coarse
    LUT / FF figure (not operator by operator: its C++ is not this project's)."""
    t = design.tiling
    dsp_items = {
        "linear unit": t.lin_in * t.lin_out * design.dsp_per_mac,
        "attention": 2 * t.p * cfg.head_dim,
        "other (allowance)": 24,
    }
    dsp = sum(dsp_items.values())
    N, D, act = cfg.num_tokens, cfg.embed_dim, profile.act.width
    wide_cols = max(3 * D, max(cfg.mlp_hidden, cfg.expert_hidden))
    bram = t.lin_out * bram36(N * math.ceil(D / t.lin_out), act)
    bram += t.lin_in * bram36(N * math.ceil(D / t.lin_in), act)
    bram += t.lin_in * bram36(cfg.num_patches * math.ceil(cfg.patch_dim / t.lin_in), 8)
    bram += t.lin_in * bram36(N * math.ceil(wide_cols / t.lin_in), act)
    bram += 2 * cfg.num_experts * bram36(N, 32) + t.lin_out * bram36(N, 64) + 4
    wide_bits = N * wide_cols * act
    lin_macs, attn_macs = t.lin_in * t.lin_out, 2 * t.p * cfg.head_dim
    lut = int(lin_macs * 40 + attn_macs * 60 + wide_bits / 1e4 + 25_000)
    ff = lin_macs * 48 + attn_macs * 64 + 30_000
    util = {
        "dsp": dsp / device.dsp,
        "bram36": bram / device.bram36,
        "uram": 0.0,
        "lut": lut / device.lut,
        "ff": ff / device.ff,
    }
    return {
        "estimate": True,
        "dsp48e2": int(dsp),
        "dsp48e2_by_unit": dsp_items,
        "bram36": round(bram, 1),
        "uram": 0,
        "lut_estimate": lut,
        "ff_estimate": ff,
        **_fit(util),
    }


def table(est: Estimate) -> str:
    """Readable per-stage-kind summary and per-layer totals (labelled ESTIMATE)."""
    lines = [
        f"ESTIMATE (not synthesised): {est.config} / {est.profile} / design {est.design} / "
        f"{est.board} @ {est.clock_mhz:g} MHz, {est.batch} image(s) per call"
        + (" (expert-major)" if est.batch > 1 else ""),
        f"{'stage':<14} {'count':>5} {'compute ms':>11} {'memory ms':>10} {'time ms':>9}  bound"
        + ("   (whole call)" if est.batch > 1 else ""),
    ]
    agg: dict[str, list] = {}
    for s in est.stages:
        a = agg.setdefault(s.name, [0, 0.0, 0.0, 0.0, s.hidden])
        a[0] += 1
        a[1] += s.compute_ms
        a[2] += s.memory_ms
        a[3] += s.ms
    for name, (n, c, m, ms, hidden) in agg.items():
        bound = "hidden" if hidden else "memory" if m > c else "compute"
        lines.append(f"{name:<14} {n:>5} {c:>11.3f} {m:>10.3f} {ms:>9.3f}  {bound}")
    beside = sum(s.hidden_ms for s in est.stages)
    if beside:
        att = sum(s.compute_ms for s in est.stages if s.name == "attention")
        lines.append(
            f"attention beside the other image's linear lane (two images in flight): "
            f"{beside:.3f} of {att:.3f} ms"
        )
    r = est.resources
    u = r["utilisation"]
    if "by_unit" in r:
        lines += unit_lines(r)
    lines += [
        f"latency_ms per image (estimate) {est.latency_ms:.3f}   call_ms {est.call_ms:.3f}   "
        f"fps {1e3 / est.latency_ms:.1f}   DDR bytes/image {est.ddr_bytes / est.batch:,.0f}",
        f"resources (estimate): DSP48E2 {r['dsp48e2']} ({u['dsp']:.0%})  BRAM36 {r['bram36']} "
        f"({u['bram36']:.0%})  URAM {r['uram']} ({u['uram']:.0%})  LUT~{r['lut_estimate']:,} "
        f"({u['lut']:.0%})  FF~{r['ff_estimate']:,} ({u['ff']:.0%})  fits: {r['fits']}"
        + (f" (over the limit: {', '.join(r['over'])})" if r["over"] else ""),
        "DSP48E2 by unit (estimate): "
        + ", ".join(f"{k} {v}" for k, v in r["dsp48e2_by_unit"].items()),
    ]
    return "\n".join(lines)


def unit_lines(r: dict) -> list[str]:
    """The per-unit resource table of :func:`resources`, as printed lines."""
    head = f"{'unit (estimate)':<18} {'LUT':>9} {'FF':>9} {'DSP':>6} {'BRAM36':>7} {'URAM':>5}"
    out = [head]
    for unit, row in r["by_unit"].items():
        out.append(
            f"{unit:<18} {row['lut']:>9,} {row['ff']:>9,} {row['dsp']:>6,} "
            f"{row['bram36']:>7g} {row['uram']:>5}"
        )
    out.append(
        f"{'total':<18} {r['lut_estimate']:>9,} {r['ff_estimate']:>9,} {r['dsp48e2']:>6,} "
        f"{r['bram36']:>7g} {r['uram']:>5}"
    )
    u, lim = r["utilisation"], r["limits"]
    out.append(
        f"{'utilisation':<18} {u['lut']:>9.1%} {u['ff']:>9.1%} {u['dsp']:>6.1%} "
        f"{u['bram36']:>7.1%} {u['uram']:>5.0%}"
    )
    out.append(
        f"{'limit':<18} {lim['lut']:>9.0%} {lim['ff']:>9.0%} {lim['dsp']:>6.0%} "
        f"{lim['bram36']:>7.0%} {lim['uram']:>5.0%}"
    )
    return out


def plot(est: Estimate, path: str) -> None:
    """Stacked bar per layer: compute time and the memory-bound excess (ESTIMATE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = est.per_layer()
    names = list(layers)
    comp = [layers[n]["compute_ms"] for n in names]
    mem = [layers[n]["memory_only_ms"] for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(names)), 4))
    ax.bar(names, comp, label="compute-bound time")
    ax.bar(names, mem, bottom=comp, label="memory-bound excess (DDR)")
    ax.set_ylabel(f"ms per image (estimate, {est.batch} per call)")
    ax.set_title(
        f"ESTIMATE: {est.config} / {est.design} / {est.board} @ {est.clock_mhz:g} MHz"
        f" — {est.latency_ms:.2f} ms"
    )
    ax.tick_params(axis="x", rotation=60)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- the task decoder (edgemoe.host.estimate.decoder) ----

#: The units whose DSP48E2 sit idle while the decoder runs (no attention then): the what-if
#: of :func:`end_to_end` counts each as a MAC a cycle added to the linear unit's; the
#: kernel as built does not use them.
ATTN_UNITS = ("attention units", "attention finish")


def backbone_macs(cfg: ModelConfig) -> int:
    """Multiply-accumulates of one image's backbone (top-k experts per token)."""
    N, D, hd = cfg.num_tokens, cfg.embed_dim, cfg.head_dim
    macs = cfg.num_patches * cfg.patch_dim * D
    for i in range(cfg.depth):
        macs += N * D * 3 * D + 2 * cfg.num_heads * N * N * hd + N * D * D
        if cfg.is_moe(i):
            macs += N * D * cfg.num_experts + cfg.top_k * N * 2 * D * cfg.expert_hidden
        else:
            macs += 2 * N * D * cfg.mlp_hidden
    return macs


@dataclass
class DecoderStage(Stage):
    """A decoder stage of :func:`decoder_stages`: its cycles split into the band loads
    (with a fused x2's blend), the linear-unit calls and the stores (their sum is
    ``compute_cycles`` when nothing overlaps), its calls and its DDR bytes by kind."""

    load_cycles: int = 0
    call_cycles: int = 0
    store_cycles: int = 0
    calls: int = 0
    weight_bytes: int = 0
    read_bytes: int = 0
    write_bytes: int = 0


def decoder_stages(
    cfg: ModelConfig,
    profile: Profile,
    design: Design,
    device: Device,
    clock_mhz: float,
    batch: int,
    plan: DecoderPlan,
    opts: DecOptions = DEC_BUILT,
) -> list[DecoderStage]:
    """The decoder's stages of one task-image, from the kernel's decoder ``plan``
    (edgemoe.host.contracts.decoder) as :mod:`edgemoe.host.estimate.decoder` counts its
    bands, under the what-ifs ``opts``.

    A band: its window load (a bus word a cycle, :data:`ROW_OVERHEAD` a burst run; a
    fused x2 then writes the window into the ring ``LIN_OUT`` channels a cycle, a
    pipeline fill per window row and chunk), then per output chunk one linear-unit call
    (:func:`_linear_cycles`: a pass per weight tile of max(pixels, LIN_TILE_WORDS)
    cycles, filled and drained once per call, its first two tiles and bias fetched
    first) and the chunk's store (a burst per band row). ``dec.up_i`` has no cycles of
    its own: its work is ``dec.conv_i``'s band load.

    As built (lanes.h) a band is one linear-lane turn (its calls; conv_0's stores, the
    output stage's and the fused classifier's copy, call and logits store in it too),
    and between two bands of an image the side lane's turn stores the band's kept
    outputs and loads the next band's window (``decoder_io``). The two buffer sets
    decode two images at once: each step runs one image's band beside the other's side
    turn, so a band costs, per image, the mean of max(its calls, the side turn before
    it) and max(its calls, the side turn after it), plus :data:`DEC_STEP_CYCLES` a step;
    an image without a partner (one per call, the odd one out) runs its turns one after
    the other. ``opts.io_overlaps`` False: every image so (the kernel before).
    """
    call = _Call(cfg, profile, design, device, clock_mhz, batch)
    t, word = design.tiling, call.word
    scale = t.lin_in * t.lin_out / opts.mac_rate if opts.mac_rate else 1.0
    out: list[DecoderStage] = []
    # images of the call decoded beside a partner (the two buffer sets), per image
    paired = 2 * (batch // 2) / batch if opts.io_overlaps else 0.0

    def add(name: str, cyc: float, w: int, r: int, wr: int, **kw) -> None:
        ddr = w + r + wr
        # weights on the weight port, maps on the scratch / maps / output port: the busier
        busy = max(w / call.w_bpc, (r + wr) / call.s_bpc)
        call.add("decoder", name, cyc, ddr, True, ddr / busy if busy else call.s_bpc)
        s = call.est.stages[-1]
        out.append(DecoderStage(**asdict(s), weight_bytes=w, read_bytes=r, write_bytes=wr, **kw))

    convs = dec_conv_stages(plan)
    fuse = (opts.fuse_classifier or plan.fused) and len(convs) > 1
    rows: list[tuple] = []  # (stage, fixed cycles or None, DDR bytes, totals)
    turns: list[dict] = []  # one per band: load (side, before), work (linear), store (side, after)
    for s in plan.stages:
        if s.kind == "norm":
            D = cfg.embed_dim
            gb = 2 * -(-WEIGHT_BYTES * D // word) * word  # gamma and beta
            # after an expert-major call the final tokens are in the output regions
            tokens = cfg.num_tokens * row_bytes(cfg, t) if call.expert_major else 0
            h, w, _ = s.shape
            cyc = call.ln_cycles(h * w) + gb / word + ROW_OVERHEAD
            if tokens:
                cyc += tokens / word + ROW_OVERHEAD
            rows.append((s, cyc, (gb, tokens, 0), {}))
            continue
        if s.kind == "up":
            rows.append((s, 0, (0, 0, 0), {}))  # fused into the next convolution's band load
            continue
        fused_next = fuse and s is convs[-2]
        fused_here = plan.fused and s is convs[-1]
        # the side lane stores a band's outputs for every convolution but conv_0 (its calls
        # read the grid in h) and the one the call returns (to the output, from x)
        side_store = s.src_map >= 0 and s is not convs[-1]
        bands = band_costs(cfg, s, t, opts, fused_next, fused_here)
        load = calls = store = 0.0
        n_calls = 0
        for k, b in enumerate(bands):
            ld = b.load_words + b.load_bursts * ROW_OVERHEAD
            if b.blend_cycles:
                # the blend loop's fill: its depth taken as the epilogue's (judgement)
                ld += b.blend_cycles + b.blend_runs * DEPTH_EPILOGUE
            st = b.store_words + b.store_bursts * ROW_OVERHEAD
            cc = sum(
                _linear_cycles(design, b.pixels, s.k_tiles * t.lin_in, o) * scale for o in b.calls
            )
            load, calls, store = load + ld, calls + cc, store + st
            n_calls += len(b.calls)
            if fused_here:  # the copy, call and store: the last convolution's band's turn
                turns[-len(bands) + k]["extra"].append((s.name, ld + cc + st))
                continue
            side = st if side_store else 0.0
            turns.append(
                {"stage": s.name, "load": ld, "work": cc + st - side, "store": side, "extra": []}
            )
        weights = word * sum(b.weight_words for b in bands)
        reads, writes = (
            word * sum(b.load_words for b in bands),
            word * sum(b.store_words for b in bands),
        )
        rows.append(
            (
                s,
                None,
                (weights, reads, writes),
                {
                    "load_cycles": round(load),
                    "call_cycles": round(calls),
                    "store_cycles": round(store),
                    "calls": n_calls,
                },
            )
        )
    # each turn's cycles per image: its stage takes the turn but its fused parts' work
    cycles: dict[str, float] = {}
    for i, u in enumerate(turns):
        work = u["work"] + sum(c for _, c in u["extra"])
        before = (turns[i - 1]["store"] if i else 0.0) + u["load"]
        after = u["store"] + (turns[i + 1]["load"] if i + 1 < len(turns) else 0.0)
        alone = u["load"] + work + u["store"]
        beside = (max(work, before) + max(work, after)) / 2
        cyc = paired * beside + (1 - paired) * alone + 2 * DEC_STEP_CYCLES
        for name, c in u["extra"]:
            cycles[name] = cycles.get(name, 0.0) + c
            cyc -= c
        cycles[u["stage"]] = cycles.get(u["stage"], 0.0) + cyc
    for s, cyc, (w, r, wr), kw in rows:
        add(s.name, cycles.get(s.name, 0.0) if cyc is None else cyc, w, r, wr, **kw)
    return out


#: The issue's target (issue 24): end to end per task-image at 16 per call, default build.
TARGET_MS = 35.0
TARGET_BATCH = 16


def _head_channels(cfg: ModelConfig, channels: int) -> ModelConfig:
    """``cfg`` with every ``pup`` head ``channels`` wide (a what-if of :func:`end_to_end`)."""
    from dataclasses import replace

    specs = tuple(
        replace(s, head=replace(s.head, channels=channels)) if s.head.kind == "pup" else s
        for s in cfg.task_specs
    )
    return cfg.replace(task_specs=specs)


def _decoder_ms(cfg, profile, design, device, clock_mhz, batch, plan, opts=DEC_BUILT) -> float:
    st = decoder_stages(cfg, profile, design, device, clock_mhz, batch, plan, opts)
    return sum(s.ms for s in st)


#: The ``what`` of :func:`_chosen` when the kernel as built meets the target.
AS_BUILT = "the kernel as built (no change)"


def _chosen(
    built: float, options: dict[str, float], fields: dict[str, dict], needs_macs: str
) -> dict:
    """The build chosen to meet the target: the kernel as built (``built`` ms) if it
    does, else among every combination of the single what-ifs (``options``, keyed by
    their names joined with `` + ``) one that meets it with no new MAC hardware if any
    does (else with the idle DSPs), the fewest changes, then the fastest; if none meets,
    the fastest of all, said so."""
    names = list(fields)
    combos = [c for r in range(len(names) + 1) for c in combinations(names, r)]

    def ms(c: tuple[str, ...]) -> float:
        return options[" + ".join(c)] if c else built

    def key(c: tuple[str, ...]) -> tuple:
        return (needs_macs in c, len(c), ms(c))

    meeting = [c for c in combos if ms(c) <= TARGET_MS]
    best = min(meeting, key=key) if meeting else min(combos, key=ms)
    return {
        "what": " + ".join(best) or AS_BUILT,
        "options": list(best),
        "ms_per_task_image": ms(best),
        "meets_target": ms(best) <= TARGET_MS,
        "new_mac_hardware": needs_macs in best,
        "rule": f"the kernel as built if it meets the {TARGET_MS:g} ms target, else of every "
        "combination of the single what-ifs one meeting it without new MAC hardware if any "
        "does, then the fewest changes, then the fastest"
        + ("" if meeting else "; NONE meets the target, so the fastest of all is given"),
    }


def end_to_end(
    cfg: ModelConfig,
    profile: Profile,
    design: Design,
    device: Device,
    clock_mhz: float = 300.0,
    task: str | None = None,
    batches: tuple[int, ...] = (1, TARGET_BATCH),
    gelu_rom: str = "bram",
) -> dict | None:
    """ESTIMATED backbone + decoder per task-image (one image, one task) at each of
    ``batches`` images per call, the decoder's stages (the kernel's decoder contract v1,
    run serially as built), the physical floor and the what-ifs toward it; None when no
    task of ``cfg`` has a head the datapath decodes (or for the published design, which
    has no decoder)."""
    task = pup_task(cfg, task)
    if task is None or design.activations_in_ddr:
        return None
    t = design.tiling
    plan = dec_plan(cfg, task, t)
    res = resources(cfg, profile, design, device, gelu_rom)
    clk = clock_mhz * 1e3  # cycles per ms
    rows = {}
    for b in batches:
        backbone = estimate(cfg, profile, design, device, clock_mhz, batch=b, gelu_rom=gelu_rom)
        dec = decoder_stages(cfg, profile, design, device, clock_mhz, b, plan)
        dec_ms = sum(s.ms for s in dec)
        rows[b] = {
            "batch": b,
            "backbone_ms": backbone.latency_ms,
            "decoder_ms": dec_ms,
            "ms_per_task_image": backbone.latency_ms + dec_ms,
            "decoder_ddr_bytes": sum(s.ddr_bytes for s in dec),
        }
    by_name = {s.name: s for s in decoder_stages(cfg, profile, design, device, clock_mhz, 1, plan)}
    pair = {s.name: s for s in decoder_stages(cfg, profile, design, device, clock_mhz, 2, plan)}
    stages = []
    for p in plan.stages:
        s = by_name[p.name]
        conv = p.kind in ("conv", "logits")
        stages.append(
            {
                "name": p.name,
                "kind": p.kind,
                "map": list(p.shape[:2]),
                "c_in": p.in_shape[2] if conv else p.shape[2],
                "c_out": p.shape[2],
                "kernel": p.k,
                "fused_into": (f"dec.conv_{p.name.split('_')[1]}" if p.kind == "up" else ""),
                "bands": len(p.bands),
                "band": [p.bands[0].rows, p.bands[0].cols] if conv else [],
                "pixels_per_call": max((b.pixels for b in p.bands), default=0),
                "calls": s.calls,
                "k": p.K,
                "k_padded": p.k_tiles * t.lin_in,
                "o": p.shape[2] if conv else 0,
                "tiles_per_band": p.k_tiles * p.o_tiles,
                "macs": p.macs,
                "cycles": s.compute_cycles,
                "cycles_paired": pair[p.name].compute_cycles,
                "load_cycles": s.load_cycles,
                "call_cycles": s.call_cycles,
                "store_cycles": s.store_cycles,
                "ms": s.ms,
                "bound": s.bound,
                "ddr_weight_bytes": s.weight_bytes,
                "ddr_read_bytes": s.weight_bytes + s.read_bytes,
                "ddr_write_bytes": s.write_bytes,
            }
        )
    dec_macs = plan.macs
    macs = backbone_macs(cfg) + dec_macs
    dsp = res["dsp48e2"]
    per_mac = design.dsp_per_mac  # DSP48E2 a MAC takes at the profile's widths
    floor_ms = macs / (dsp / per_mac * clk)
    big = rows[max(batches)]
    built = big["ms_per_task_image"]
    lin = t.lin_in * t.lin_out
    bb = big["backbone_ms"]

    def what_if(c: ModelConfig = cfg, **kw) -> float:
        p = plan if c is cfg else dec_plan(c, task, t)
        return bb + _decoder_ms(c, profile, design, device, clock_mhz, max(batches), p,
                                DecOptions(**kw))  # fmt: skip

    half = cfg.task_spec(task).head.channels // 2
    idle = sum(res["dsp48e2_by_unit"].get(u, 0) for u in ATTN_UNITS) // per_mac
    macs_what = f"the attention units' idle DSPs as decoder MACs (+{idle} MAC/cycle)"
    fields = {
        "the classifier on the last convolution's band, on chip": {"fuse_classifier": True},
        "16-bit feature maps in DDR": {"fmap_bytes": 2},
        macs_what: {"mac_rate": lin + idle},
    }
    if plan.fused:  # built: not a what-if
        del fields["the classifier on the last convolution's band, on chip"]
    singles = {k: what_if(**v) for k, v in fields.items()}
    every = {}
    for r in range(1, len(fields) + 1):
        for c in combinations(fields, r):
            kw = {k: v for name in c for k, v in fields[name].items()}
            every[" + ".join(c)] = singles[c[0]] if r == 1 else what_if(**kw)
    combined = f"the {len(fields)} above together"
    narrow = f"a decoder {half} channels wide instead of {2 * half} (not M3ViT's head: retrained)"
    options = {
        **singles,
        combined: every[" + ".join(fields)],
        narrow: what_if(_head_channels(cfg, half)),
    }
    chosen = _chosen(built, every, fields, macs_what)
    meets = built <= TARGET_MS
    verdict = (
        f"meets the {TARGET_MS:g} ms target at {max(batches)} per call"
        if meets
        else f"misses the {TARGET_MS:g} ms target at {max(batches)} per call by "
        f"{built - TARGET_MS:.2f} ms"
    )
    conv_ms = sum(s["ms"] for s in stages if s["kind"] in ("conv", "logits"))
    ranked = sorted(singles, key=singles.get)
    next_step = (
        f"the decoder's {dec_macs / 1e9:.2f} GMAC take {dec_macs / (lin * clk):.2f} ms on the "
        f"linear unit's {lin} MACs a cycle at full rate; its convolutions and classifier "
        f"take {conv_ms:.2f} ms as built at one image per call, "
        f"{big['decoder_ms']:.2f} ms per task-image at {max(batches)} (two images at once, "
        "one on each buffer set: one image's band on the linear unit while the side lane "
        "stores the other's last band and loads its next window into its ring"
        + (
            "; the classifier runs inside the last convolution's bands, whose map is never stored"
            if plan.fused
            else ""
        )
        + "). The floor counts the "
        f"{dsp} DSP48E2 of the build as {dsp // per_mac} MACs a cycle"
        + (f" ({per_mac} a MAC at these widths)" if per_mac > 1 else "")
        + ". Next steps, largest gain first: "
        + "; ".join(f"{k} (saves {built - singles[k]:.2f} ms)" for k in ranked)
        + f"; all {len(fields)}: {options[combined]:.2f} ms. Changing the model instead: "
        f"{narrow}, {options[narrow]:.2f} ms"
    )
    return {
        "estimate": True,
        "task": task,
        "note": (
            "per task-image: one image's backbone for one task (latency_ms of that many "
            "per call) plus its decoder, in the same kernel call; the decoder streams its "
            "weights once per band, so more images per call do not share them"
        ),
        "plan": "edgemoe.host.contracts.decoder.decoder_plan (the kernel's decoder contract "
        "v1: rectangular bands, each loading its window's new rows into the ring, one "
        "linear-unit call and one store per band and output chunk; as built two images "
        "decode at once, one's band on the linear unit beside the side lane's store and "
        "load for the other's)",
        "stages": stages,
        "stages_note": "cycles, ms and DDR bytes of one task-image at 1 image per call (the "
        "norm reads the tokens back from DDR after an expert-major call: per_call); "
        "cycles = load_cycles + call_cycles + store_cycles + two steps a band (nothing "
        "overlaps with one image); cycles_paired: the same stage with two images at once "
        "(more than one per call); a dec.up_i stage is fused into its convolution's band "
        "load (its cycles and bytes are counted there)",
        "per_call": {str(b): r for b, r in rows.items()},
        "ms_per_task_image": {str(b): r["ms_per_task_image"] for b, r in rows.items()},
        "macs_per_task_image": {"backbone": backbone_macs(cfg), "decoder": dec_macs},
        "floor": {
            "ms_per_task_image": floor_ms,
            "device_ms_per_task_image": macs / (device.dsp / per_mac * clk),
            "device_rule": f"the same over all {device.dsp} DSP48E2 of the {device.part}",
            "rule": f"all MACs ({macs / 1e9:.3f} G) / ({dsp} DSP48E2"
            + (f" / {per_mac} a MAC" if per_mac > 1 else "")
            + f" x {clock_mhz:g} MHz)",
            "linear_unit_ms": macs / (lin * clk),
        },
        "target": {
            "ms_per_task_image": TARGET_MS,
            "batch": max(batches),
            "meets": meets,
            "gap_ms": max(0.0, built - TARGET_MS),
            "verdict": verdict,
        },
        "options_ms_per_task_image": options,
        "combinations_ms_per_task_image": every,
        "chosen": chosen,
        "options_note": (
            f"what-ifs, each ms per task-image at {max(batches)} per call with the rest as "
            "built (the kernel v1); the idle DSPs shorten the passes in proportion to the "
            "MAC rate (the operand selects and adder trees that would feed them are not "
            "counted)"
        ),
        "next_step": next_step,
        "fits": res["fits"],
    }


def decoder_table(e2e: dict) -> str:
    """The decoder's stages and the end-to-end figures of :func:`end_to_end`, as printed."""
    out = [
        f"decoder of task {e2e['task']} (ESTIMATE; the kernel's v1 plan), per task-image; "
        "cycles: one image per call, paired: two images at once (more per call):",
        f"{'stage':<11} {'map':>8} {'bands':>5} {'calls':>5} {'px/call':>7} {'k':>5} "
        f"{'o':>4} {'GMAC':>6} {'load cyc':>10} {'call cyc':>10} {'store cyc':>10} "
        f"{'cycles':>10} {'paired':>10} {'ms':>7} {'DDR rd MB':>9} {'DDR wr MB':>9}",
    ]
    for s in e2e["stages"]:
        hw = f"{s['map'][0]}x{s['map'][1]}"
        if s["fused_into"]:
            out.append(f"{s['name']:<11} {hw:>8}  (fused into {s['fused_into']}'s band load)")
            continue
        out.append(
            f"{s['name']:<11} {hw:>8} {s['bands']:>5} {s['calls']:>5} "
            f"{s['pixels_per_call']:>7} {s['k']:>5} {s['o']:>4} {s['macs'] / 1e9:>6.3f} "
            f"{s['load_cycles']:>10,} {s['call_cycles']:>10,} {s['store_cycles']:>10,} "
            f"{s['cycles']:>10,} {s['cycles_paired']:>10,} {s['ms']:>7.3f} "
            f"{s['ddr_read_bytes'] / 1e6:>9.3f} {s['ddr_write_bytes'] / 1e6:>9.3f}"
        )
    for b, r in e2e["per_call"].items():
        out.append(
            f"end to end, {b} per call: backbone {r['backbone_ms']:.2f} + decoder "
            f"{r['decoder_ms']:.2f} = {r['ms_per_task_image']:.2f} ms per task-image"
        )
    f, tg = e2e["floor"], e2e["target"]
    out.append(f"physical floor: {f['ms_per_task_image']:.2f} ms per task-image ({f['rule']})")
    out.append(f"target: {tg['verdict']}")
    out += [f"  what-if {k}: {v:.2f} ms" for k, v in e2e["options_ms_per_task_image"].items()]
    ch = e2e["chosen"]
    out.append(
        f"chosen next build: {ch['what']}: {ch['ms_per_task_image']:.2f} ms ("
        + ("meets" if ch["meets_target"] else "MISSES")
        + f" the target; {ch['rule']})"
    )
    out.append(f"next step: {e2e['next_step']}")
    return "\n".join(out)
