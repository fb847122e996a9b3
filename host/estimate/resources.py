"""Resource model of the kernel, operator by operator (ESTIMATES, not synthesis).

Every line of the table counts one C++ construct of ``hls/`` (file and function named on
the line) as Vitis would build it, in the form the merged C++ takes after the second HLS
review (``hls/README.md``, "What the C++ builds"): GELU ROM
copies split even / odd, per-unit / per-lane EXP2 ROM halves, one narrow division per
bank walk, attention / LayerNorm / routing state at its real widths with bounded shift
amounts (``fixed.h shift_round_in``), LayerNorm's divisions as compare-subtract chains
(``fixed.h udiv_const``), per-row scalars read once, one read and one write per ``x``
bank per ``lin_pass`` iteration, the side moves as per-row bursts through FIFOs. Every
width and count the lines use comes from one table,
:class:`Operators` (built by :func:`operators` from the config, profile and tiling), so a
line can be checked, or changed, in one place when the C++ differs.

Costing rules (UltraScale+ fabric; the rates are judgement where no document is cited):

* multiply: DSP48E2, 27 x 18 signed, partial products (:func:`mult_dsps`);
* add / subtract / compare of w bits: w LUTs (a LUT per bit beside the CARRY8), its
  result registered: w FFs;
* k:1 mux per bit: a LUT6 selects 4:1, two 2:1 muxes with a shared select share a LUT6
  (:func:`mux_luts`);
* barrel shifter of w bits by a run-time amount in 0..a: ceil(bits(a) / 2) levels of
  4:1 muxes, w LUTs per level, registered once (``shift_round_in<W, LO, HI>``: the
  constant LO - 1 is wiring, the shifter is W - LO + 1 bits by HI - LO + 1 positions);
* division by a constant the C++ cannot reduce to a shift (the bank walks' one 16-bit
  division, linear_unit's per-call division): a pipelined divider core, one w-bit
  subtractor per quotient bit (w^2 LUTs, 2 w^2 FFs) -- the worse of Vitis's two
  lowerings for LUT (a magic-number multiply would take a DSP instead);
* ``udiv_const<N, DIV>`` (fixed.h): N unrolled steps of a (bits(DIV) + 1)-bit
  compare-and-subtract, 2 (bits(DIV) + 1) LUTs a step, a register stage every 4 steps;
* ROM: BRAM36 by aspect ratio, or LUT-ROM (a LUT6 per 64 entries and bit, per read);
* 32-deep arrays of state: LUTRAM (RAM32M16: 8 LUTs per 32 x 14 bits).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.accumulators import accumulator_bits
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.scratch import MAX_GROUP
from edgemoe.host.contracts.tables import ln_eps_raw
from edgemoe.host.contracts.tiling import Tiling
from edgemoe.host.export.bundle import scale_entries
from edgemoe.host.export.hls_params import ATTN_INTERLEAVE, LIN_AHEAD, ln_lanes
from edgemoe.models.config import ModelConfig

#: The resources of a line, in the order the table prints them.
RESOURCES = ("lut", "ff", "dsp", "bram36", "uram")

#: Target utilisation of the default build (the fit rule of ``edgemoe estimate``).
LIMITS = {"dsp": 0.80, "lut": 0.75, "ff": 0.60, "bram36": 0.85, "uram": 0.85}

#: The per-unit table's rows, in print order.
UNITS = (
    "linear unit MACs",
    "linear epilogue",
    "weight stream",
    "side moves",
    "rotate networks",
    "attention units",
    "attention finish",
    "layernorm",
    "routing",
    "decoder",
    "buffer-set muxes",
    "on-chip buffers",
    "m_axi",
    "control",
)

# The m_axi adapters (hls/include/edgemoe/ddr.h AXI_BURST, AXI_OUTSTANDING): a FIFO of
# outstanding x burst words per direction a port uses (UG1399 "Controlling AXI4 Burst
# Behavior").
AXI_BURST = 64
AXI_OUTSTANDING = 4
#: (port, reads, writes) of the five bundles (maps: the decoder's band I/O in the side
#: lane, the scratch buffer again).
AXI_PORTS = (
    ("weights", True, False),
    ("images", True, False),
    ("output", True, True),
    ("scratch", True, True),
    ("maps", True, True),
)


def mult_dsps(a_bits: int, b_bits: int) -> int:
    """DSP48E2 (27x18 signed) for one a x b signed multiply, split into partial products
    (the better of the two ways round)."""
    return min(
        math.ceil(a_bits / 27) * math.ceil(b_bits / 18),
        math.ceil(b_bits / 27) * math.ceil(a_bits / 18),
    )


def mux_luts(k: int) -> float:
    """LUT6s per bit of a k:1 mux: none for 1, half for 2 (two per LUT6_2 with a shared
    select), one up to 4, a tree of F7/F8-assisted LUTs beyond."""
    if k <= 1:
        return 0.0
    if k == 2:
        return 0.5
    return float(-(-(k - 1) // 3))


def bram36(depth: int, width: int) -> float:
    """BRAM36 for one depth x width memory (best aspect ratio, BRAM18 halves)."""
    best = math.inf
    for d_cap, w_cap in (
        (512, 72),
        (1024, 36),
        (2048, 18),
        (4096, 9),
        (8192, 4),
        (16384, 2),
        (32768, 1),
    ):
        n = math.ceil(depth / d_cap) * math.ceil(width / w_cap)
        best = min(best, n)
        half = math.ceil(depth / (d_cap // 2 if d_cap > 512 else 512)) * math.ceil(width / w_cap)
        if depth <= d_cap // 2 and w_cap <= 36:
            best = min(best, 0.5 * half)
    return best


# ---- operator costs: (lut, ff) ----


def _adder(w: int) -> tuple[float, float]:
    return float(w), float(w)


def _tree(n: int, w: int, absorbed: int = 0) -> tuple[float, float]:
    """An adder tree of n inputs of w bits; the first ``absorbed`` levels sit in the
    DSP48E2 post-adders (no LUTs)."""
    lut = ff = 0.0
    level = 0
    while n > 1:
        level += 1
        pairs = n // 2
        if level > absorbed:
            lut += pairs * (w + level)
            ff += pairs * (w + level)
        n -= pairs
    return lut, ff


def _shifter(w: int, amount_max: int) -> tuple[float, float]:
    levels = -(-max(1, amount_max).bit_length() // 2)
    return float(w * levels), float(w)


def _shift_in(w: int, lo: int, hi: int) -> tuple[float, float]:
    """fixed.h shift_round_in<W, LO, HI>: a constant pre-shift (wiring), then a barrel
    shifter of W - LO + 1 bits by HI - LO + 1 positions."""
    return _shifter(w - lo + 1, hi - lo)


def _const_div(w: int) -> tuple[float, float]:
    return float(w * w), float(2 * w * w)


def _udiv_const(n: int, div: int) -> tuple[float, float]:
    """fixed.h udiv_const<N, DIV>: N steps of a (bits(DIV) + 1)-bit compare-and-subtract
    and its select (2 LUTs a bit), the remainder and the quotient so far registered every
    4 steps (judgement: about 4 steps of a narrow carry chain per 3.3 ns stage)."""
    rb = _bits(div) + 1
    return float(n * 2 * rb), float(-(-n // 4) * (n + rb))


def _saturate(w_in: int, w_out: int) -> tuple[float, float]:
    """Range check of the w_in - w_out + 1 top bits, then a clamp mux."""
    return float(-(-(w_in - w_out + 1) // 3) + w_out), float(w_out)


def _lutrom(depth: int, width: int) -> float:
    """LUTs of one read port of a LUT-ROM."""
    n = -(-depth // 64)
    return width * (n + mux_luts(n))


def _lutram(depth: int, width: int) -> float:
    return 8.0 * -(-depth // 32) * -(-width // 14)


def _bits(v: int) -> int:
    """Bits of an unsigned value up to v."""
    return max(1, int(v).bit_length())


def multipliers(cfg: ModelConfig, profile: Profile, t: Tiling) -> dict[str, list[tuple]]:
    """Every multiplier of the kernel, unit by unit, as (what, count, a bits, b bits): the
    operand widths the C++ casts them to (signed bits; an unsigned w-bit operand is w + 1).
    The counts are the hardware copies: unrolled loops multiply, a loop at II 2 shares
    each multiplier between two iterations."""
    f, u = profile.formats, profile.units
    acc = accumulator_bits(cfg, profile)
    act, qkv, prob = f["act"].width, f["attn_qkv"].width, f["prob"].width + 1
    nf = u["newton_frac"]
    newton, newton_arg = nf + 2, nf + 4  # newton_t (unsigned nf + 1), newton_arg_t
    hd, E, lanes = cfg.head_dim, cfg.num_experts, ln_lanes(t)
    exp2 = (
        "exp2 interpolation",
        1,
        u["exp2_frac"] + 1,
        f["attn_score"].frac - u["exp2_lut_bits"] + 1,
    )
    recip = [
        ("reciprocal m * y0", 1, newton_arg, newton),
        ("reciprocal Newton", 1, newton, newton_arg),
    ]
    attn_sum = (cfg.num_tokens * (1 << f["prob"].frac)).bit_length() + 1
    ln_t1 = (max(-f["ln_stat"].min_raw, f["ln_stat"].max_raw) * cfg.embed_dim).bit_length() + 1
    gelu_sh = f["act"].frac - u["gelu_lut_bits"]
    return {
        "linear unit": [("MAC x * w", t.lin_in * t.lin_out, act, 16)],
        "linear epilogue": [
            ("GELU interpolation", t.lin_out, u["gelu_frac"] + 1, gelu_sh + 1),
            # one product for OUT_EXPERT and OUT_DELTA (linear_output forms it once)
            ("gate weight * y", t.lin_out, prob, act),
        ],
        "attention units": [
            ("q . k", t.p * hd, qkv, qkv),
            ("acc or v times e", t.p * hd, acc["attn_acc"], prob),
            ("S * e", t.p, attn_sum, prob),
            (exp2[0], t.p, exp2[2], exp2[3]),
        ],
        "attention finish": [
            # attn_store at II 1, a row in ATTN_FINISH_PARTS = 2 iterations of
            # ATTN_FINISH_COLS products: that many multipliers by construction
            ("mean * 1/S", -(-hd // 2), qkv + u["attn_guard"] + 3, newton),
            *recip,
        ],
        "layernorm": [
            ("xs^2", lanes, f["ln_stat"].width, f["ln_stat"].width),
            ("centred * rstd", lanes, act + u["ln_mean_guard"] + 1, newton),
            ("z * gamma", lanes, f["ln_norm"].width, 16),
            ("T1^2 (per token)", 1, ln_t1, ln_t1),
            ("rsqrt y0^2", 1, newton, newton),
            ("rsqrt m * y0^2", 1, newton_arg, newton),
            ("rsqrt Newton", 1, newton, newton_arg),
        ],
        "routing": [
            (exp2[0], E, exp2[2], exp2[3]),
            ("p * 1/S", E, prob, newton),
            *recip,
        ],
    }


@dataclass(frozen=True)
class Operators:
    """THE OPERATOR TABLE: every width and count the LUT/FF model uses, derived from the
    config, profile and tiling (:func:`operators`). Change a field here when the fixed
    C++ differs from the review's prescription; every line follows.

    Widths are signed bits unless named otherwise; ``*_banks`` are cyclic partition
    factors; ``gelu_rom`` is the GELU table's storage (``"bram"``: one dual-port BRAM
    ROM per epilogue lane; ``"lutrom"``: per lane an even and an odd half in LUTs);
    ``rotate_mux`` how wide the bank rotate selects are (see the field).
    """

    # shape (config.h / params_*.h)
    tokens: int
    embed: int
    wide_cols: int
    head_dim: int
    experts: int
    patches: int
    patch_dim: int
    scales: int
    # tiling
    lin_in: int
    lin_out: int
    attn_p: int
    attn_l: int
    ln_lanes: int
    row_lanes: int  # 32-bit values per bus word (ROW_LANES)
    axi_bits: int
    x_banks: int
    h_banks: int
    wide_banks: int
    tile_bufs: int  # LIN_TILE_BUFS = LIN_AHEAD + 1
    # widths (profile; edgemoe.host.contracts.accumulators)
    act_w: int
    weight_w: int
    pixel_w: int
    lin_acc_w: int
    attn_qkv_w: int
    attn_score_w: int
    attn_acc_w: int  # ACC_ATTN_ACC_BITS: the attention row state (was wide_t)
    attn_sum_w: int  # ACC_ATTN_SUM_BITS
    attn_mean_w: int  # attn_mean_t
    prob_w: int  # unsigned, + 1 as a signed operand
    newton_w: int  # newton_t
    newton_arg_w: int
    ln_stat_w: int
    ln_norm_w: int
    ln_sum_w: int  # ACC_LN_STAT_SUM_BITS (T1)
    ln_centred_w: int  # ACT_W + LN_MEAN_GUARD + 1
    ln_s1_w: int  # layernorm.h LnWidths::S1
    ln_t2_w: int  # LnWidths::T2 (unsigned)
    ln_a_w: int  # ln_finish: D * T2 - T1^2, Bits<D> + T2
    ln_var_w: int  # LnWidths::VAR: rsqrt_w's input (leading-one encoder)
    # ln_finish's two udiv_const<N, DIV> (mean, variance): (N, DIV)
    ln_divs: tuple[tuple[int, int], ...]
    exp2_w: int  # EXP2_FRAC + 1: mantissa
    # linear_output's sum and shifts: wide_t (fixed.h, 64 bits as declared: nothing in
    # the C++ narrows it) shifted by a shift_t (scale.h, 6 bits: 0..63)
    epi_w: int
    epi_amount: int
    # fixed.h shift_round_in<W, LO, HI> as instantiated: (W, LO, HI)
    exp2_shift: tuple[int, int, int]  # exp2.h exp2_prob
    finish_shift: tuple[int, int, int]  # attention.h softmax_finish_part
    route_shift: tuple[int, int, int]  # moe.h route_tokens (the gate weight)
    ln_shift: tuple[int, int, int]  # layernorm.h ln_normalise
    attn_dot_w: int  # attention.h ATTN_DOT_W: the q.k tree
    attn_sum_mag_w: int  # attention.h ATTN_SUM_MAG_W: reciprocal_w's input
    route_sum_w: int  # moe.h ROUTE_SUM_W: the sum and reciprocal_w's input
    finish_cols: int  # attention.h ATTN_FINISH_COLS: multipliers of attn_store
    finish_prod_w: int  # attention.h ATTN_FINISH_PROD_W
    # ROMs (params_*.h): entries x declared bits
    gelu_entries: int  # the table's entries (GELU_ROM holds them as copies of halves)
    gelu_copies: int  # GELU_COPIES: one per two epilogue lanes
    gelu_half: int  # GELU_HALF: entries of one even / odd half
    rom_w: int  # GELU_ROM is int32_t (its values fit 23 bits)
    exp2_entries: int
    exp2_half: int  # exp2.h EXP2_HALF: one half of a per-unit / per-lane copy
    seed_w: int  # bits of an exp2 / reciprocal / rsqrt table value (NEWTON_FRAC + 1)
    recip_entries: int
    rsqrt_entries: int
    gelu_rom: str
    # rotate-network selects (banked.h bank_walk): "range" -- Vitis sizes a run-time
    # lane / bank index by its value range (a store selects among min(lanes, banks) lanes
    # per bank, a load among all banks per lane), the review's reading; "phases" -- only
    # the banks / gcd(grain, banks) phases the C++ can reach (a select written per phase)
    rotate_mux: str
    # bank walks with a division by a non-power-of-two bank count, one narrow division
    # (and one modulo, bank_phase) per walk: (where, banks, bits of the column index)
    div_walks: tuple[tuple[str, int, int], ...]
    # control (lanes.h linear_lane, linear.h linear_unit): run-time products as declared:
    # (what, count, a bits, b bits)
    control_mults: tuple[tuple[str, int, int, int], ...]
    loops: int  # labelled loops of hls/ (each: a counter, its bound, an FSM state)
    addr64: int  # 64-bit address adders (m_axi offsets) in the kernel
    # coarse rates (judgement: typical Vitis m_axi / s_axilite adapters and FSMs), (LUT, FF)
    axi_per_direction: tuple[int, int] = (900, 1200)  # read or write channel of a bundle
    axi_per_bundle: tuple[int, int] = (300, 400)
    axilite: tuple[int, int] = (400, 700)  # 7 arguments, 64-bit pointers, ap_ctrl_hs
    per_loop: tuple[int, int] = (72, 40)  # 32-bit counter, bound compare, FSM state
    dataflow_control: tuple[int, int] = (1500, 2000)  # handshakes, stream and step control


#: banked.h BANK_COL_BITS: the width of a walk's one division.
BANK_COL_BITS = 16


def _walks(t: Tiling) -> tuple[tuple[str, int, int], ...]:
    """Bank walks that divide by a number of phases (banks / gcd(grain, banks)) that is
    not a power of two (a power of two divides by a shift), one BANK_COL_BITS division
    each (banked.h bank_at; the linear unit's side moves advance a BankAt instead)."""
    out = []
    row = t.axi_bits // 32  # ROW_LANES: 32-bit values of a bus word
    par = t.axi_bits // 16  # 16-bit parameters of a bus word
    for where, banks, grain in (
        ("park.h park_row<true>: x load", t.lin_out, row),
        ("park.h park_row<true>: x store (the next image resumed)", t.lin_out, row),
        ("park.h park_row<false>: x load", t.lin_out, row),
        ("park.h resume_image: x", t.lin_out, row),
        ("stages.h embed_load: token bias into x", t.lin_out, row),
        ("stages.h write_rows: x", t.lin_out, row),
        ("linear.h linear_unit: bias loader", t.lin_out, par),
        ("stages.h layernorm_block: gamma", ln_lanes(t), par),
        ("stages.h layernorm_block: beta", ln_lanes(t), par),
    ):
        phases = banks // math.gcd(grain, banks)
        if phases & (phases - 1):
            out.append((where, phases, BANK_COL_BITS))
    return tuple(out)


def operators(cfg: ModelConfig, profile: Profile, t: Tiling, gelu_rom: str = "bram") -> Operators:
    """The operator table of one build."""
    if gelu_rom not in ("bram", "lutrom"):
        raise ValueError(f"gelu_rom must be 'bram' or 'lutrom', not {gelu_rom!r}")
    f, u = profile.formats, profile.units
    acc = accumulator_bits(cfg, profile)
    act, qkv = f["act"].width, f["attn_qkv"].width
    nf = u["newton_frac"]
    wide_cols = max(3 * cfg.embed_dim, max(cfg.mlp_hidden, cfg.expert_hidden))
    lin_acc = max(acc[k] for k in ("patch_embed", "linear_in_dim", "linear_in_hidden", "gate"))
    ln_stat = f["ln_stat"].width
    ln_t1 = (max(-f["ln_stat"].min_raw, f["ln_stat"].max_raw) * cfg.embed_dim).bit_length() + 1
    ln_centred = act + u["ln_mean_guard"] + 1
    D, pf = cfg.embed_dim, f["prob"].frac
    ln_s1 = _bits(D << (act - 1)) + 1
    ln_t2 = _bits(D << (2 * ln_stat - 2))
    eps = ln_eps_raw(cfg.ln_eps, profile)
    ln_var = _bits((1 << (2 * ln_stat - 2)) + eps)
    twos = (D & -D).bit_length() - 1
    odd = D >> twos
    mean_q = ln_s1 + u["ln_mean_guard"] + 2 - twos - 1  # sdiv_floor_odd's Q
    ln_divs = (
        (_bits((1 << mean_q) * odd), odd),
        (_bits(D) + ln_t2 + 1 - 2 * twos - 1, odd * odd),
    )
    ln_base = f["act"].frac + u["ln_mean_guard"] + nf - f["ln_norm"].frac
    ln_prod = ln_centred + nf + 2
    ln_lo = ln_base + (_bits(eps) - 2 - 2 * f["ln_stat"].frac) // 2
    ln_hi = ln_base + (ln_var - 1 - 2 * f["ln_stat"].frac) // 2
    attn_sum_mag = _bits(cfg.num_tokens << pf)
    route_sum = _bits(cfg.num_experts << pf)
    ef = u["exp2_frac"]
    newton, newton_arg = nf + 2, nf + 4
    return Operators(
        tokens=cfg.num_tokens,
        embed=cfg.embed_dim,
        wide_cols=wide_cols,
        head_dim=cfg.head_dim,
        experts=cfg.num_experts,
        patches=cfg.num_patches,
        patch_dim=cfg.patch_dim,
        scales=len(scale_entries(cfg)),
        lin_in=t.lin_in,
        lin_out=t.lin_out,
        attn_p=t.p,
        attn_l=ATTN_INTERLEAVE,
        ln_lanes=ln_lanes(t),
        row_lanes=t.axi_bits // 32,
        axi_bits=t.axi_bits,
        x_banks=t.lin_out,
        h_banks=t.lin_in,
        wide_banks=t.lin_in,
        tile_bufs=LIN_AHEAD + 1,
        act_w=act,
        weight_w=16,
        pixel_w=8,
        lin_acc_w=lin_acc,
        attn_qkv_w=qkv,
        attn_score_w=f["attn_score"].width,
        attn_acc_w=acc["attn_acc"],
        attn_sum_w=(cfg.num_tokens * (1 << f["prob"].frac)).bit_length() + 1,
        attn_mean_w=qkv + u["attn_guard"] + 3,
        prob_w=f["prob"].width + 1,
        newton_w=newton,
        newton_arg_w=newton_arg,
        ln_stat_w=ln_stat,
        ln_norm_w=f["ln_norm"].width,
        ln_sum_w=ln_t1,
        ln_centred_w=ln_centred,
        ln_s1_w=ln_s1,
        ln_t2_w=ln_t2,
        ln_a_w=_bits(D) + ln_t2,
        ln_var_w=ln_var,
        ln_divs=ln_divs,
        exp2_w=ef + 1,
        epi_w=64,
        epi_amount=63,
        exp2_shift=(ef + 2, ef - pf, ef + 2),
        finish_shift=(
            acc["attn_acc"],
            pf - u["attn_guard"],
            attn_sum_mag - 1 - u["attn_guard"],
        ),
        route_shift=(f["prob"].width + nf + 2, nf, nf + route_sum - 1 - pf),
        ln_shift=(ln_prod, ln_lo, ln_hi),
        attn_dot_w=_bits(cfg.head_dim << (2 * qkv - 2)) + 1,
        attn_sum_mag_w=attn_sum_mag,
        route_sum_w=route_sum,
        finish_cols=-(-cfg.head_dim // 2),
        finish_prod_w=qkv + u["attn_guard"] + 3 + nf + 1,
        gelu_entries=u["gelu_range"] * (1 << u["gelu_lut_bits"]) + 1,
        gelu_copies=-(-t.lin_out // 2),
        gelu_half=(u["gelu_range"] * (1 << u["gelu_lut_bits"]) + 2) // 2,
        rom_w=32,
        exp2_entries=(1 << u["exp2_lut_bits"]) + 1,
        exp2_half=((1 << u["exp2_lut_bits"]) + 2) // 2,
        seed_w=nf + 1,
        recip_entries=1 << u["recip_lut_bits"],
        rsqrt_entries=3 << (u["rsqrt_lut_bits"] - 1),
        gelu_rom=gelu_rom,
        rotate_mux="range",
        div_walks=_walks(t),
        control_mults=(
            # lanes.h linear_lane: uint64_t(image) * run.out_stride (int sign-extended x
            # uint64_t), three sites
            ("uint64_t(image) * out_stride", 3, 32, 64),
            # linear.h linear_unit: pl.T = OT * IT; pl.total's two products (int x int)
            ("LinearPlan T and total", 3, 32, 32),
        ),
        loops=78,  # labelled loops of hls/ that are not fully unrolled
        addr64=40,
    )


@dataclass
class Line:
    """One counted construct."""

    unit: str
    what: str
    where: str  # file and function of hls/include/edgemoe (or hls/src)
    lut: float = 0.0
    ff: float = 0.0
    dsp: int = 0
    bram36: float = 0.0
    uram: int = 0


def lines(
    cfg: ModelConfig,
    profile: Profile,
    t: Tiling,
    ops: Operators,
    two_sets: bool = True,
    uram: bool = True,
) -> list[Line]:
    """Every counted construct of the kernel, unit by unit (``uram``: the device has
    URAM for the wide buffers, else they take BRAM)."""
    o = ops
    out: list[Line] = []

    def add(unit: str, what: str, where: str, n: float = 1, lut_ff=(0.0, 0.0), **kw) -> None:
        out.append(Line(unit, what, where, n * lut_ff[0], n * lut_ff[1], **kw))

    def plus(*costs: tuple[float, float]) -> tuple[float, float]:
        return sum(c[0] for c in costs), sum(c[1] for c in costs)

    # ---- DSPs: every multiplier at the widths the C++ casts it to ----
    dsp_unit = {
        "linear unit": "linear unit MACs",
        "linear epilogue": "linear epilogue",
        "attention units": "attention units",
        "attention finish": "attention finish",
        "layernorm": "layernorm",
        "routing": "routing",
    }
    where_dsp = {
        "linear unit": "linear.h lin_compute (lin_mac_in x lin_mac_out)",
        "linear epilogue": "linear.h linear_output, gelu.h gelu",
        "attention units": "attention.h attention_score, softmax_update, exp2.h exp2_parts",
        "attention finish": "attention.h softmax_finish_part (attn_store, II 1, "
        "ATTN_FINISH_COLS products), newton.h reciprocal_w",
        "layernorm": "layernorm.h ln_accumulate / ln_finish / ln_normalise, newton.h rsqrt",
        "routing": "moe.h route_tokens, exp2.h exp2_parts, newton.h reciprocal",
    }
    for unit, items in multipliers(cfg, profile, t).items():
        for what, n, a, b in items:
            out.append(
                Line(
                    dsp_unit[unit],
                    f"{n} x {what} ({a}x{b}b)",
                    where_dsp[unit],
                    dsp=n * mult_dsps(a, b),
                )
            )
    for what, n, a, b in o.control_mults:
        out.append(
            Line(
                "control",
                f"{n} x {what} ({a}x{b}b)",
                "lanes.h linear_lane, linear.h linear_unit",
                dsp=n * mult_dsps(a, b),
            )
        )

    # ---- linear unit MACs ----
    U = "linear unit MACs"
    prod_w = o.act_w + o.weight_w
    add(
        U,
        f"{o.lin_out} adder trees of {o.lin_in} products ({prod_w}b), first level in the "
        "DSP post-adders",
        "linear.h lin_compute lin_mac_in",
        o.lin_out,
        _tree(o.lin_in, prod_w, absorbed=1),
    )
    add(
        U,
        f"{o.lin_out} accumulator adds ({o.lin_acc_w}b) and 'first ? 0 : acc' gates",
        "linear.h lin_compute lin_mac_init",
        o.lin_out,
        plus(_adder(o.lin_acc_w), (o.lin_acc_w * 0.5, 0)),
    )
    add(
        U,
        f"{o.lin_in} input lanes: 4:1 source select (pix, h, gathered h, wide) + zero past k",
        "linear.h linear_input",
        o.lin_in,
        (o.act_w * mux_luts(4) + 1, o.act_w),
    )
    add(
        U,
        f"accumulators: {o.lin_out} banks of {o.tokens} x {o.lin_acc_w}b",
        "linear.h lin_compute (acc)",
        bram36=o.lin_out * bram36(o.tokens, o.lin_acc_w),
    )

    # ---- weight stream ----
    U = "weight stream"
    tile = o.lin_in * o.lin_out
    tile_words = -(-tile * 16 // o.axi_bits)
    add(
        U,
        f"wtile: {o.tile_bufs} x {tile} x 16b registers (complete partition)",
        "linear.h lin_compute (wtile)",
        lut_ff=(0, o.tile_bufs * tile * 16),
    )
    add(
        U,
        f"{o.tile_bufs}:1 buffer select per weight bit ((b0 + t) % {o.tile_bufs})",
        "linear.h lin_compute lin_mac_in",
        lut_ff=(tile * 16 * mux_luts(o.tile_bufs), 0),
    )
    add(
        U,
        f"write decode: {o.tile_bufs} x {tile_words} word enables",
        "linear.h lin_compute lin_tile_word",
        lut_ff=(o.tile_bufs * tile_words, 0),
    )
    add(
        U,
        f"weight FIFO: {tile_words} words x {o.axi_bits}b",
        "linear.h lin_stream (ws)",
        lut_ff=(60, 2 * 16),
        bram36=bram36(tile_words, tile * 16 // tile_words),
    )
    add(
        U,
        "fetch loop: burst address (64b) and word counter",
        "linear.h lin_fetch_weights",
        lut_ff=(64 + 32, 64 + 32),
    )

    # ---- side moves (linear.h lin_stream's readers and writer, move_rows) ----
    U = "side moves"
    row_words = o.embed * 4 * 8 // o.axi_bits  # ROW_WORDS
    add(
        U,
        f"side_rd, side_wr: 2 x {o.tokens} x 32b row bases (a BRAM18 each; LUTRAM would be "
        f"{round(2 * _lutram(o.tokens, 32))} LUTs: Vitis's choice, not determined)",
        "linear.h linear_unit (side_rd, side_wr)",
        bram36=2 * min(0.5, bram36(o.tokens, 32)),
    )
    add(
        U,
        f"FIFO side_in: {2 * row_words} x {o.axi_bits}b (LIN_SIDE_DEPTH), BRAM (as side_out)",
        "linear.h lin_stream (side_in)",
        lut_ff=(60, 32),
        bram36=bram36(2 * row_words, o.axi_bits),
    )
    add(
        U,
        f"FIFO side_out: {row_words} x {o.axi_bits}b (ROW_WORDS), BRAM (UG1399 "
        "config_storage: auto-SRL only up to 1,024 bits; BRAM or LUTRAM is the tool's choice)",
        "linear.h lin_stream (side_out)",
        lut_ff=(60, 32),
        bram36=bram36(row_words, o.axi_bits),
    )
    add(
        U,
        f"move_rows merged: {row_words} x {o.axi_bits}b, LUTRAM",
        "linear.h move_rows (merged)",
        1,
        (_lutram(row_words, o.axi_bits), 0),
    )
    add(
        U,
        "readers / writer: row and word counters, 64-bit bases (3 loops)",
        "linear.h lin_side_read, lin_side_write",
        3,
        plus(_adder(64), _adder(16)),
    )

    # ---- linear epilogue (per output lane) ----
    U = "linear epilogue"
    L = o.lin_out
    aw = o.epi_w
    add(
        U,
        "addend select (bias / token bias in x)",
        "linear.h linear_output",
        L,
        (o.act_w * mux_luts(2), 0),
    )
    add(
        U,
        f"addend << sh.addend ({aw}b, 0..{o.epi_amount})",
        "linear.h linear_output (scale.h linear_shift)",
        L,
        _shifter(aw, o.epi_amount),
    )
    add(U, f"acc + addend ({aw}b)", "linear.h linear_output", L, _adder(aw))
    add(
        U,
        f"scale_round(v, sh.out): shift ({aw}b, 0..{o.epi_amount}) and rounding add",
        "linear.h linear_output, scale.h scale_round",
        L,
        plus(_shifter(aw, o.epi_amount), _adder(aw)),
    )
    add(
        U,
        "saturate to ACT / ATTN_QKV / ATTN_SCORE",
        "linear.h linear_output",
        L,
        plus(_saturate(aw, o.act_w), _saturate(aw, o.attn_qkv_w), _saturate(aw, o.attn_score_w)),
    )
    add(
        U,
        f"gated = shift_round(g * y, PROB_F): rounding add ({o.prob_w + o.act_w}b)",
        "linear.h linear_output",
        L,
        _adder(o.prob_w + o.act_w),
    )
    add(
        U,
        "GELU: |y|, index range check, t1 - t0, interpolation add and round, x - d",
        "gelu.h gelu",
        L,
        plus(
            _adder(o.act_w), _adder(o.rom_w), _adder(o.rom_w), _adder(o.rom_w), _adder(o.act_w + 1)
        ),
    )
    add(
        U,
        "x updates: x + y and x + gated, saturated",
        "linear.h linear_output",
        L,
        plus(
            _adder(o.act_w + 1),
            _saturate(o.act_w + 1, o.act_w),
            _adder(o.act_w + 1),
            _saturate(o.act_w + 1, o.act_w),
        ),
    )
    x_depth = -(-o.embed // o.x_banks)
    add(
        U,
        f"x ports, per bank: read row 4:1 ({_bits(o.tokens)}b: merge row | r | r + 1 | "
        f"token), in-bank address 2:1 ({_bits(x_depth - 1)}b); write data 4:1 ({o.act_w}b)",
        "linear.h lin_compute (lin_x_read, lin_x_write: one read, one write per bank)",
        o.x_banks,
        (
            _bits(o.tokens) * mux_luts(4)
            + _bits(x_depth - 1) * mux_luts(2)
            + o.act_w * mux_luts(4),
            0,
        ),
    )
    add(
        U,
        f"xq and x_new registers: 2 x {o.x_banks} x {o.act_w}b",
        "linear.h lin_compute (xq, x_new)",
        lut_ff=(0, 2 * o.x_banks * o.act_w),
    )
    add(
        U,
        "to_wide 3:1 (qkv, gate, gelu)",
        "linear.h lin_epilogue",
        L,
        (o.act_w * mux_luts(3), o.act_w),
    )
    add(
        U,
        "per-row scalars read once: token id, gate weight, registered",
        "linear.h linear_output (hoisted token / weight)",
        lut_ff=(0, _bits(o.tokens) + o.prob_w + _bits(o.tokens)),
    )
    add(
        U,
        "bias buffer: cyclic LIN_OUT banks, one read each",
        "linear.h linear_unit (bias)",
        lut_ff=(0, 0),
        bram36=0,
    )
    roms = 2 * o.gelu_copies
    if o.gelu_rom == "bram":
        add(
            U,
            f"GELU_ROM: {o.gelu_copies} copies x (even, odd) = {roms} dual-port ROMs of "
            f"{o.gelu_half} x {o.rom_w}b, two reads each (lanes 2c, 2c + 1)",
            "gelu.h gelu, linear.h lin_compute (GELU_ROM, rom_2p)",
            bram36=roms * bram36(o.gelu_half, o.rom_w),
        )
    else:
        add(
            U,
            f"GELU_ROM as LUT-ROM: {roms} halves of {o.gelu_half} x {o.rom_w}b, two read "
            "ports each",
            "gelu.h gelu, linear.h lin_compute (GELU_ROM)",
            roms,
            (2 * _lutrom(o.gelu_half, o.rom_w), 0),
        )

    # ---- rotate networks (banked.h bank_walk) ----
    U = "rotate networks"
    act = o.act_w
    nets = (
        # (where, banks, lanes, grain, bits, store?)
        ("linear.h lin_compute: epilogue -> wide", o.wide_banks, o.lin_out, o.lin_out, act, True),
        # the side word's phase advances by ROW_LANES (bank_advance): 6 phases reachable,
        # but whether Vitis sees the phase as a multiple of 4 could not be determined, so
        # the merge's select is modelled at the worse 24:1 (rotate_mux "range")
        ("linear.h lin_compute: gather -> h", o.h_banks, o.row_lanes, o.row_lanes, act, True),
        ("linear.h merge_lanes: merge <- x", o.x_banks, o.row_lanes, o.row_lanes, act, False),
        ("linear.h move_rows: <- x", o.x_banks, o.row_lanes, o.row_lanes, act, False),
        ("linear.h move_rows: -> h", o.h_banks, o.row_lanes, o.row_lanes, act, True),
        ("layernorm.h ln_accumulate_group: <- x", o.x_banks, o.ln_lanes, o.ln_lanes, act, False),
        ("layernorm.h ln_normalise_group: <- x", o.x_banks, o.ln_lanes, o.ln_lanes, act, False),
        ("layernorm.h ln_normalise_group: -> h", o.h_banks, o.ln_lanes, o.ln_lanes, act, True),
        # park_row<RESUME> is inlined into park_rows' two flat loops: two copies
        ("park.h park_row<true>: <- x", o.x_banks, o.row_lanes, o.row_lanes, act, False),
        ("park.h park_row<false>: <- x", o.x_banks, o.row_lanes, o.row_lanes, act, False),
        ("park.h park_row<true>: <- h", o.h_banks, o.row_lanes, o.row_lanes, act, False),
        ("park.h park_row<false>: <- h", o.h_banks, o.row_lanes, o.row_lanes, act, False),
        ("park.h park_row<true>: -> x", o.x_banks, o.row_lanes, o.row_lanes, act, True),
        ("park.h resume_image: -> x", o.x_banks, o.row_lanes, o.row_lanes, act, True),
        ("stages.h embed_load: token bias -> x", o.x_banks, o.row_lanes, o.row_lanes, act, True),
        ("stages.h write_rows: <- x", o.x_banks, o.row_lanes, o.row_lanes, act, False),
        ("stages.h write_rows: <- wide", o.wide_banks, o.row_lanes, o.row_lanes, act, False),
        ("linear.h linear_unit: bias -> bias banks", o.lin_out, o.axi_bits // 16, 8, 16, True),
        ("stages.h layernorm_block: gamma / beta", o.ln_lanes, o.axi_bits // 16, 8, 16, True),
        ("stages.h embed_load: pixels -> pix", o.lin_in, o.axi_bits // 8, 16, 8, True),
        (
            "attention.h attn_fetch_kv: K <- wide",
            o.wide_banks,
            -(-o.head_dim // o.attn_l),
            None,
            act,
            False,
        ),
        (
            "attention.h attn_fetch_kv: V <- wide",
            o.wide_banks,
            -(-o.head_dim // o.attn_l),
            None,
            act,
            False,
        ),
        (
            "attention.h attn_load_queries: <- wide",
            o.wide_banks,
            o.head_dim,
            o.head_dim,
            act,
            False,
        ),
        ("attention.h attn_store: -> h", o.h_banks, o.head_dim, o.head_dim, act, True),
    )
    kv_part = -(-o.head_dim // o.attn_l)
    kv_grain = math.gcd(math.gcd(o.embed, o.head_dim), kv_part)
    for where, banks, lanes, grain, bits, store in nets:
        g = kv_grain if grain is None else grain
        phases = banks // math.gcd(g, banks)
        # Vitis's index range for a run-time lane/bank: lanes a store can take, banks a
        # lane can come from -- unless the phase is a compile-time constant
        if o.rotate_mux == "phases" or phases == 1:
            k = phases
        else:
            k = min(lanes, banks) if store else banks
        n = banks if store else lanes
        addr = _bits(o.tokens * -(-o.wide_cols // banks))
        add(
            U,
            f"{'store' if store else 'load'} {lanes} lanes / {banks} banks: {k}:1 x {bits}b "
            f"per {'bank' if store else 'lane'}, bank addresses",
            "banked.h bank_walk via " + where,
            lut_ff=(
                n * bits * mux_luts(k) + (banks * addr if phases > 1 else 0),
                n * bits if k > 4 else 0,
            ),
        )
    for where, banks, bits in o.div_walks:
        add(
            U,
            f"one division by {banks} phases ({bits}b) per walk, remainder by a constant multiply "
            "and subtract",
            "banked.h bank_at via " + where,
            1,
            plus(_const_div(bits), _adder(bits)),
        )

    # ---- attention units (per row unit; attention.h attn_key) ----
    U = "attention units"
    P, hd = o.attn_p, o.head_dim
    aa, sc = o.attn_acc_w, o.attn_score_w
    add(
        U,
        f"{P} q.k trees of {hd} products (ATTN_DOT_W {o.attn_dot_w}b), first level in the DSPs",
        "attention.h attention_score",
        P,
        _tree(hd, o.attn_dot_w, absorbed=1),
    )
    add(
        U,
        f"narrow to the score: constant shift, rounding add ({o.attn_dot_w}b), saturate to {sc}b",
        "attention.h attention_score",
        P,
        plus(_adder(o.attn_dot_w), _saturate(o.attn_dot_w, sc)),
    )
    add(
        U,
        f"s > m, s - m and |.| ({sc + 1}b), max select (m {sc}b)",
        "attention.h softmax_update",
        P,
        plus(_adder(sc + 1), _adder(sc + 1), _adder(sc + 1), (sc * 0.5, 0)),
    )
    ew, elo, ehi = o.exp2_shift
    add(
        U,
        f"exp2: interpolation add, shift_round_in<{ew},{elo},{ehi}> "
        f"({ew - elo + 1}b x {ehi - elo + 1} positions), saturate",
        "exp2.h exp2_prob",
        P,
        plus(
            _adder(o.exp2_w + 1),
            _shift_in(ew, elo, ehi),
            _adder(ew - elo + 1),
            _saturate(ew - elo + 1, o.prob_w - 1),
        ),
    )
    add(
        U,
        f"exp2 ROM halves per unit: {2 * P} LUT-ROMs of {o.exp2_half} x {o.seed_w}b, one read each",
        "exp2.h exp2_parts, attention.h attention (exp2_rom)",
        2 * P,
        (_lutrom(o.exp2_half, o.seed_w), 0),
    )
    add(
        U,
        f"S update: rounding add, S + e, select ({o.attn_sum_w}b; adders {o.attn_sum_w + 2}b)",
        "attention.h softmax_update",
        P,
        plus(_adder(o.attn_sum_w + 2), _adder(o.attn_sum_w + 2), (o.attn_sum_w * 0.5, 0)),
    )
    add(
        U,
        f"{P} x {hd} state updates: operand select ({aa}b), two {aa + 2}b adds (rounding, "
        f"acc + v << PROB_F), result ({aa}b, registered)",
        "attention.h softmax_update",
        P * hd,
        plus((aa * 0.5, 0), _adder(aa + 2), _adder(aa + 2), (0, aa)),
    )
    add(
        U,
        f"row state in LUTRAM: {P} x ({hd} acc {aa}b + m {sc}b + S {o.attn_sum_w}b), "
        f"{o.attn_l} deep",
        "attention.h attention (row_acc, row_m, row_sum)",
        1,
        (
            P * hd * _lutram(o.attn_l, aa)
            + P * (_lutram(o.attn_l, sc) + _lutram(o.attn_l, o.attn_sum_w)),
            0,
        ),
    )
    add(
        U,
        f"queries in LUTRAM: {P} x {hd} x {o.attn_l} deep x {act}b",
        "attention.h attention (q)",
        1,
        (P * hd * _lutram(o.attn_l, act), 0),
    )
    add(
        U,
        f"K / V ping-pong: 2 x 2 x {hd} x {act}b registers, 2:1 read select",
        "attention.h attention (kv_k, kv_v)",
        1,
        (2 * hd * act * mux_luts(2), 2 * 2 * hd * act),
    )

    # ---- attention finish (attn_store at II 1: a row in two parts of finish_cols) ----
    U = "attention finish"
    C = o.finish_cols
    add(
        U,
        f"unit select {P}:1 of S and {hd} acc ({aa}b), then the part's {C} of {hd} (2:1)",
        "attention.h attn_store",
        1,
        (
            (hd + 1) * aa * mux_luts(P) + C * aa * mux_luts(-(-hd // C)),
            (hd + 1) * aa,
        ),
    )
    fw, flo, fhi = o.finish_shift
    add(
        U,
        f"{C} shift_round_in<{fw},{flo},{fhi}> ({fw - flo + 1}b x {fhi - flo + 1} positions) "
        "with rounding",
        "attention.h softmax_finish_part",
        C,
        plus(_shift_in(fw, flo, fhi), _adder(fw - flo + 1)),
    )
    add(
        U,
        f"{C} constant rounds of the {o.finish_prod_w}b product, saturate to {act}b",
        "attention.h softmax_finish_part",
        C,
        plus(_adder(o.finish_prod_w), _saturate(o.finish_prod_w, act)),
    )

    def recip_w(w: int) -> tuple[float, float]:
        """newton.h reciprocal_w<W>: W-input leading-one encoder, W + 1-bit normaliser
        (0..W - 1), seed LUT-ROM, the Newton products' rounding adds."""
        return plus(
            (w, w),
            _shifter(w + 1, w - 1),
            (_lutrom(o.recip_entries, o.seed_w), 0),
            _adder(o.newton_arg_w),
            _adder(o.newton_arg_w),
            _adder(o.newton_w),
        )

    add(
        U,
        f"reciprocal_w<{o.attn_sum_mag_w}>: encoder, normaliser, seed ROM "
        f"({o.recip_entries} x {o.seed_w}b), Newton adds",
        "attention.h softmax_finish_part, newton.h reciprocal_w (RECIP_SEED_ATTN)",
        1,
        recip_w(o.attn_sum_mag_w),
    )

    # ---- layernorm (layernorm.h layernorm_rows) ----
    U = "layernorm"
    Ln = o.ln_lanes
    add(
        U,
        f"{Ln} lanes: xs rounding and saturation",
        "layernorm.h ln_accumulate",
        Ln,
        plus(_adder(act), _saturate(act, o.ln_stat_w)),
    )
    add(
        U,
        f"S1, T1, T2 trees of {Ln} + accumulators ({o.ln_s1_w}/{o.ln_sum_w}/{o.ln_t2_w}b)",
        "layernorm.h ln_accumulate",
        1,
        plus(
            _tree(Ln, act),
            _tree(Ln, o.ln_stat_w),
            _tree(Ln, 2 * o.ln_stat_w),
            _adder(o.ln_s1_w),
            _adder(o.ln_sum_w),
            _adder(o.ln_t2_w),
        ),
    )
    (mn, md), (vn, vd) = o.ln_divs
    add(
        U,
        f"mean: shifts, bias, udiv_const<{mn},{md}> ({mn} compare-subtract steps)",
        "layernorm.h ln_finish, sdiv_floor_odd, fixed.h udiv_const",
        1,
        plus(_adder(o.ln_s1_w + 10), _adder(mn), _udiv_const(mn, md)),
    )
    add(
        U,
        f"variance: D T2 (constant multiply, {o.ln_a_w}b) - T1^2, udiv_const<{vn},{vd}>, + eps",
        "layernorm.h ln_finish, fixed.h udiv_const",
        1,
        plus(_adder(o.ln_a_w), _adder(o.ln_a_w), _adder(o.ln_var_w), _udiv_const(vn, vd)),
    )
    add(
        U,
        f"rsqrt_w<{o.ln_var_w}>: {o.ln_var_w}-input encoder, {o.ln_var_w + 1}b normaliser "
        f"(0..{o.ln_var_w}), seed ROM ({o.rsqrt_entries} x {o.seed_w}b), Newton adds",
        "layernorm.h ln_finish, newton.h rsqrt_w (RSQRT_SEED)",
        1,
        plus(
            (o.ln_var_w, o.ln_var_w),
            _shifter(o.ln_var_w + 1, o.ln_var_w),
            (_lutrom(o.rsqrt_entries, o.seed_w), 0),
            _adder(o.newton_arg_w),
            _adder(o.newton_arg_w),
            _adder(o.newton_w),
        ),
    )
    stats_w = o.ln_centred_w + o.newton_w + 6
    add(
        U,
        f"LnStats of {o.tokens} tokens ({stats_w}b)",
        "layernorm.h layernorm_rows (st)",
        bram36=bram36(o.tokens, stats_w),
    )
    lw, llo, lhi = o.ln_shift
    add(
        U,
        f"{Ln} lanes: centre ({o.ln_centred_w}b), shift_round_in<{lw},{llo},{lhi}> "
        f"({lw - llo + 1}b x {lhi - llo + 1} positions) + round, saturate, + beta "
        f"({o.ln_norm_w + 17}b), round, saturate",
        "layernorm.h ln_normalise",
        Ln,
        plus(
            _adder(o.ln_centred_w),
            _shift_in(lw, llo, lhi),
            _adder(lw - llo + 1),
            _saturate(lw - llo + 1, o.ln_norm_w),
            _adder(o.ln_norm_w + 17),
            _adder(o.ln_norm_w + 17),
            _saturate(o.ln_norm_w + 17, act),
        ),
    )

    # ---- routing (moe.h route_tokens, one token per cycle) ----
    U = "routing"
    E = o.experts
    add(
        U,
        f"max of {E} logits ({sc}b): compare-select tree",
        "moe.h route_tokens",
        E - 1,
        plus(_adder(sc), (sc * 0.5, 0)),
    )
    add(
        U,
        f"{E} lanes: l - m, exp2 interpolation, shift_round_in<{ew},{elo},{ehi}>, saturate",
        "moe.h route_tokens, exp2.h exp2_prob",
        E,
        plus(
            _adder(sc + 1),
            _adder(o.exp2_w + 1),
            _shift_in(ew, elo, ehi),
            _adder(ew - elo + 1),
            _saturate(ew - elo + 1, o.prob_w - 1),
        ),
    )
    add(
        U,
        f"exp2 ROM halves per lane: {2 * E} LUT-ROMs of {o.exp2_half} x {o.seed_w}b, one read each",
        "moe.h route_tokens (exp2_rom), exp2.h exp2_parts",
        2 * E,
        (_lutrom(o.exp2_half, o.seed_w), 0),
    )
    add(
        U,
        f"sum of {E} probabilities (ROUTE_SUM_W {o.route_sum_w}b)",
        "moe.h route_tokens",
        1,
        _tree(E, o.route_sum_w),
    )
    add(
        U,
        f"reciprocal_w<{o.route_sum_w}>: encoder, normaliser, seed ROM, Newton adds",
        "moe.h route_tokens, newton.h reciprocal_w (RECIP_SEED)",
        1,
        recip_w(o.route_sum_w),
    )
    add(
        U,
        f"ranks: {E} x {E} comparisons ({sc}b) and counts",
        "moe.h route_tokens",
        E * E,
        (sc / 2 + 2, 1),
    )
    gw, glo, ghi = o.route_shift
    add(
        U,
        f"{E} gate weights: shift_round_in<{gw},{glo},{ghi}> ({gw - glo + 1}b x "
        f"{ghi - glo + 1} positions) + round, clamp to [0, 1]",
        "moe.h route_tokens",
        E,
        plus(
            _shift_in(gw, glo, ghi),
            _adder(gw - glo + 1),
            _saturate(gw - glo + 1, o.prob_w),
        ),
    )
    add(
        U,
        f"{E} queue counters and writes",
        "moe.h route_tokens",
        E,
        plus(_adder(_bits(o.tokens)), (_bits(o.tokens) * 2, 0)),
    )

    # ---- buffer-set muxes (lanes.h lane_step: one instance, two call sites, sets swapped) ----
    # Sized by which lane uses which port (the lane_step comment, hls/README.md F11): the
    # side lane reads wide on 2 ports (attention: K and V of a column share a bank) and
    # writes it on 1 (the decoder's ring), reads h and x on 2 ports (the x2's two source
    # columns; the band store) and writes each on 1 (attention's output; the x2's staging
    # rows); the linear lane uses x, h and wide on up to 2 ports each. A signal only one
    # lane drives reduces to gating; a shared select puts two 2:1 bits in a LUT6_2.
    U = "buffer-set muxes"
    if two_sets:
        h_addr = _bits(o.tokens * -(-o.embed // o.h_banks) - 1)
        x_addr = _bits(o.tokens * -(-o.embed // o.x_banks) - 1)
        w_addr = _bits(o.tokens * -(-o.wide_cols // o.wide_banks) - 1)
        for name, banks, in_bits, out_bits in (
            # inputs: 2 sets x 2 ports x (address + ce + we) and the write data on the
            # port both lanes write; read data: 4 ports
            ("wide", o.wide_banks, 2 * 2 * (w_addr + 2) + 2 * act, 4 * act),
            # inputs: 2 sets x 2 ports x (address + ce + we) and the write data on the
            # shared write port; read data: 4 ports
            ("h", o.h_banks, 2 * 2 * (h_addr + 2) + 2 * act, 4 * act),
            ("x", o.x_banks, 2 * 2 * (x_addr + 2) + 2 * act, 4 * act),
        ):
            add(
                U,
                f"{name}: {banks} banks x 2 ports x 2 sets, {in_bits} input + {out_bits} "
                "read-data bits per bank, 2:1",
                "lanes.h lane_step (ALLOCATION limit 1 in run_images)",
                banks,
                ((in_bits + out_bits) * mux_luts(2), 0),
            )

    # ---- on-chip buffers ----
    U = "on-chip buffers"
    sets = 2 if two_sets else 1
    N, D = o.tokens, o.embed
    add(
        U,
        f"x: {sets} x {o.x_banks} banks of {N * -(-D // o.x_banks)} x {act}b",
        "buffers.h Buffers x",
        bram36=sets * o.x_banks * bram36(N * -(-D // o.x_banks), act),
    )
    add(
        U,
        f"h: {sets} x {o.h_banks} banks",
        "buffers.h Buffers h",
        bram36=sets * o.h_banks * bram36(N * -(-D // o.h_banks), act),
    )
    add(
        U,
        f"pix: {o.lin_in} banks x 8b",
        "buffers.h LaneBuffers pix",
        bram36=o.lin_in * bram36(o.patches * -(-o.patch_dim // o.lin_in), 8),
    )
    wide_depth = N * -(-o.wide_cols // o.wide_banks)
    if uram:
        add(
            U,
            f"wide: {sets} x {o.wide_banks} banks of {wide_depth} x {act}b in URAM",
            "buffers.h Buffers wide, edgemoe_top.cpp BIND_STORAGE",
            uram=sets * o.wide_banks * -(-wide_depth // 4096) * -(-act // 72),
        )
    else:
        add(
            U,
            f"wide: {sets} x {o.wide_banks} banks of {wide_depth} x {act}b in BRAM (no URAM)",
            "buffers.h Buffers wide",
            bram36=sets * o.wide_banks * bram36(wide_depth, act),
        )
    add(
        U,
        f"routing queues: 2 x {E} x {N} x 32b",
        "buffers.h Routing token / weight",
        bram36=2 * E * bram36(N, 32),
    )
    add(
        U,
        "LN parameters, bias banks, scale table (judgement: BRAM or LUTRAM)",
        "stages.h layernorm_block (gamma / beta), linear.h linear_unit (bias)",
        bram36=4,
    )
    add(
        U,
        "expert-major: counts, one queue, two chunks' rows",
        "experts.h QueueWalk, buffers.h ExpertChunk",
        bram36=bram36(MAX_GROUP * E, 32)
        + 2 * bram36(N, 32)
        + 2 * (2 * bram36(N, 64) + bram36(N, 32)),
    )

    # ---- m_axi ----
    U = "m_axi"
    for port, reads, writes in AXI_PORTS:
        dirs = int(reads) + int(writes)
        add(
            U,
            f"{port}: adapter, {dirs} direction(s), {AXI_OUTSTANDING} x {AXI_BURST} x "
            f"{o.axi_bits}b FIFO each",
            "edgemoe_top.cpp edgemoe_top (INTERFACE m_axi)",
            1,
            (
                dirs * o.axi_per_direction[0] + o.axi_per_bundle[0],
                dirs * o.axi_per_direction[1] + o.axi_per_bundle[1],
            ),
            bram36=dirs * bram36(AXI_OUTSTANDING * AXI_BURST, o.axi_bits),
        )
    add(
        U,
        "s_axilite: 8 arguments (64b pointers), ap_ctrl_hs, ap_return",
        "edgemoe_top.cpp edgemoe_top (INTERFACE s_axilite)",
        1,
        o.axilite,
    )

    # ---- control ----
    U = "control"
    add(
        U,
        f"{o.loops} labelled loops: counter, bound compare, FSM state",
        "every loop label of hls/include/edgemoe, hls/src",
        o.loops,
        o.per_loop,
    )
    add(
        U,
        f"{o.addr64} 64-bit address adds (m_axi offsets)",
        "ddr.h ddr_read, park.h park_row, experts.h next_expert_chunk, lanes.h linear_lane",
        o.addr64,
        _adder(64),
    )
    add(
        U,
        f"scale table: {o.scales} x 16b LUTRAM, linear_shift decode; load_scales' word "
        f"buffer {-(-o.scales * 16 // o.axi_bits)} x {o.axi_bits}b LUTRAM",
        "scale.h ScaleTable, linear_shift, load_scales",
        1,
        (
            -(-16 * o.scales // 64) + 4 * 16 + _lutram(-(-o.scales * 16 // o.axi_bits), o.axi_bits),
            64,
        ),
    )
    add(
        U,
        "per call: one 16-bit division by LIN_OUT (output tiles) and one 16-bit % 3 "
        "(the hand-off buffer)",
        "linear.h linear_unit, narrow_ceil_div",
        2,
        _const_div(16),
    )
    add(
        U,
        "dataflow handshakes, stream and lane_step control",
        "linear.h lin_stream, lanes.h lane_step",
        1,
        o.dataflow_control,
    )
    out += decoder_lines(cfg, profile, t, o)
    return out


#: Loops the decoder's C++ adds (hls/include/edgemoe/decoder.h; each inlined template
#: copy its own loop): in the side lane (decoder_io) the window read (3 copies: ring, x,
#: h), the window's rows and chunks, the x2 blend, the band store (2 copies: from h and
#: from x, each rows + words); in the linear lane the band store (2 copies: scratch for
#: conv_0, output, each rows + words), the fused classifier's copy (dec_load_window's
#: copy mode: rows, chunks, the blend loop), the up-stop store (rows, chunks, words) and
#: the norm-stop store.
DECODER_LOOPS = 21
#: 64-bit byte-address computations, one per burst site: the window reads (3), the band
#: stores (4), the up-stop and norm-stop stores.
DECODER_ADDR64 = 9
#: Run-time products in those addresses (pixel index x words per pixel, map rows x
#: columns of a plane): 17 x 17 bits or less, once per burst, not in a pipeline.
DECODER_ADDR_PRODUCTS = 12


def decoder_lines(cfg: ModelConfig, profile: Profile, t: Tiling, o: Operators) -> list[Line]:
    """What the task decoder adds to the kernel (unit ``decoder``), as its C++ builds it
    (hls/include/edgemoe/decoder.h, the decoder steps of lanes.h, the IN_GRID / IN_RING
    input and OUT_CONV / OUT_LOGITS epilogue of linear.h) for the decoder contract's
    plans (edgemoe.host.contracts.decoder.decoder_plan, largest over the config's tasks
    the datapath decodes); none when no task has such a head. The linear unit, its weight
    stream and epilogue adders, the LayerNorm and the m_axi ports are the backbone's."""
    from edgemoe.host.contracts.decoder import decoder_plan, padded_channels, wide_cols
    from edgemoe.host.estimate.decoder import window

    plans = [decoder_plan(cfg, s.name, t) for s in cfg.task_specs if s.head.on_datapath]
    if not plans:
        return []
    stages = [s for plan in plans for s in plan.stages]
    out: list[Line] = []
    U = "decoder"
    fw = profile.formats["dec_feat"].width
    act = o.act_w
    up_w = act + 5  # 9a + 3b + 3c + d + 8 on act-wide values (docs/numerics.md)
    lanes = o.lin_in
    up_lanes = math.gcd(math.gcd(o.x_banks, o.h_banks), o.wide_banks)
    w_addr = _bits(o.tokens * -(-o.wide_cols // o.wide_banks) - 1)
    max_w = max(s.shape[1] for s in stages)
    pix_w = _bits(max_w + 1)  # a map coordinate, one beyond each edge
    win_rows = max(1, max(window(s, b)[0] for s in stages for b in s.bands))
    C = "linear.h lin_compute (IN_GRID / IN_RING)"
    out.append(
        Line(
            U,
            f"im2col address: band-pixel and tap counters (5), pixel + tap ({pix_w + 1}b adds), "
            f"4 edge compares (zero padding), a {win_rows}-way select of the window row's "
            f"ring row and column base, 2 adds of {w_addr}b; no product",
            C,
            lut=2 * 16 + 3 * 8 + 7 * (pix_w + 1) + 2 * 12 * mux_luts(win_rows) + 2 * w_addr,
            ff=2 * 16 + 3 * 8 + 4 * (pix_w + 1) + 2 * w_addr,
        )
    )
    out.append(
        Line(
            U,
            f"h and wide banks' row and column: the window's as one more source (2:1 of "
            f"{w_addr}b) on {o.h_banks} + {o.wide_banks} banks; the {lanes} input lanes' "
            "zero padding by channel (a compare each)",
            C,
            lut=(o.h_banks + o.wide_banks) * w_addr * mux_luts(2) + lanes * 4,
        )
    )
    out.append(
        Line(
            U,
            f"epilogue: ReLU and saturation to dec_feat ({fw}b), saturation to dec_out, on "
            f"{o.lin_out} lanes",
            "linear.h linear_output (OUT_CONV, OUT_LOGITS)",
            lut=o.lin_out * (2 * _saturate(o.act_w, fw)[0] + fw * 0.5),
            ff=o.lin_out * fw,
        )
    )
    out.append(
        Line(
            U,
            f"ConvWindow, 3 copies (the linear lane's band; the side lane's store and load "
            f"bands): {win_rows} ring rows and column bases in registers, the band's "
            f"origin and sizes; per band 3 8-bit divisions (the ring's first row) and "
            f"{2 * win_rows} 8 x 8 products (the table)",
            "decoder.h dec_window (linear_lane PC_DEC_BAND, decoder_io), linear.h ConvWindow "
            "(ARRAY_PARTITION complete)",
            lut=3 * (2 * win_rows * 12 * mux_luts(2) + 3 * 8 * 8 + 2 * win_rows * 64),
            ff=3 * (2 * win_rows * 12 + 8 * 16 + 3 * 8),
        )
    )
    out.append(
        Line(
            U,
            "the side lane's decoder turn (DecIo): two convolutions' table entries (2 x 25 "
            "fields), the two bands' places and the ring's first new row, registered at the "
            "step's start; the set's decoder state (two bands' counters) in each BufferSet",
            "lanes.h dec_io_of, lane_step; decoder.h DecIo",
            lut=2 * 25 * 16 * mux_luts(2) + 64,
            ff=2 * (2 * 64 + 23 * 32) + 2 * 10 * 32,
        )
    )
    up = [s for s in stages if s.fused_up]
    if up:
        lut, ff = _adder(up_w)
        out.append(
            Line(
                U,
                f"x2 blend: {up_lanes} lanes (gcd of the x, h and wide banks) of "
                f"9a + 3b + 3c + d + 8 >> 4 (4 adds of {up_w}b, the constants as shift-adds)",
                "decoder.h dec_load_window (dec_up_words)",
                lut=up_lanes * 4 * lut,
                ff=up_lanes * (2 * ff + act),
            )
        )
        out.append(
            Line(
                U,
                f"x2 indices: window column, source column and its neighbour (2 clamps of "
                f"{pix_w}b), the two staging rows",
                "decoder.h dec_load_window (dec_up_words)",
                lut=4 * 16 + 4 * pix_w + 2 * w_addr,
                ff=4 * 16 + 2 * w_addr,
            )
        )
        row = max(s.src_shape[1] * s.src_shape[2] for s in up)  # one low-resolution row
        out.append(
            Line(
                U,
                f"x2 staging: a window row's two source rows (up to {row} values each) in "
                f"the buffer set's x and h ({o.tokens} x {o.embed} each, idle during the "
                "decoder's later convolutions)",
                "decoder.h dec_load_window: buffers.h Buffers x, h (reused)",
            )
        )
    ring = max(
        window(s, b)[0] * window(s, b)[1] * padded_channels(s.in_shape[2], t)
        for s in stages
        for b in s.bands
        if s.src_map >= 0
    )
    capacity = cfg.num_tokens * wide_cols(cfg)
    if ring > capacity:
        raise ConfigError(f"the decoder's window of {ring} values exceeds wide ({capacity})")
    out.append(
        Line(
            U,
            f"ring of window rows: up to {ring} values in one buffer set's wide banks "
            f"({capacity} values)",
            "decoder.h dec_load_window: buffers.h Buffers wide (reused)",
        )
    )
    # the decoder's bank walks (banked.h bank_walk_phased): the select is written per
    # phase (PHASES = banks / grain values), so a load lane takes a PHASES:1 select over
    # constant banks and a store bank takes one lane per phase that lands in it
    # (ceil(lanes / grain): 1 for these walks, a wire); plus each bank's row step (row or
    # row + 1) on its address
    rl = o.row_lanes
    nets = (
        ("dec_read_pixels -> wide", o.wide_banks, rl, rl, True),
        ("dec_read_pixels -> x", o.x_banks, rl, rl, True),
        ("dec_read_pixels -> h", o.h_banks, rl, rl, True),
        ("dec_up_words <- x (2)", o.x_banks, 2 * up_lanes, up_lanes, False),
        ("dec_up_words <- h (2)", o.h_banks, 2 * up_lanes, up_lanes, False),
        ("dec_up_words -> wide", o.wide_banks, up_lanes, up_lanes, True),
        ("dec_write_pixels <- x (3 copies: scratch, maps, output)", o.x_banks, 3 * rl, rl, False),
        ("dec_write_pixels <- h (the side lane's first chunk)", o.h_banks, rl, rl, False),
        ("dec_write_pixels <- wide", o.wide_banks, rl, rl, False),
        ("dec_store_norm <- h", o.h_banks, rl, rl, False),
    )
    for where, banks, n_lanes, grain, store in nets:
        phases = banks // math.gcd(grain, banks)
        k = -(-min(n_lanes, grain) // grain) if store else phases
        n = banks if store else n_lanes
        addr = _bits(o.tokens * -(-o.wide_cols // banks))
        out.append(
            Line(
                U,
                f"{'store' if store else 'load'} {n_lanes} lanes / {banks} banks, {phases} "
                f"phases: {k}:1 x {act}b per {'bank' if store else 'lane'}, bank addresses",
                "banked.h bank_walk_phased via decoder.h " + where,
                lut=n * act * mux_luts(k) + banks * addr,
                ff=n * act if k > 4 else 0,
            )
        )
    fused = any(plan.fused for plan in plans)
    if fused:
        h_addr = _bits(o.tokens * -(-o.embed // o.h_banks) - 1)
        out.append(
            Line(
                U,
                f"fused classifier, OUT_CONV_H: the epilogue's one rotate network (banked.h "
                f"bank_route, counted with the wide store) feeds h's {o.h_banks} banks too: "
                f"h's write port a 2:1 of the gather's data ({act}b) and address ({h_addr}b) "
                "a bank; the h tiles' select (a compare of the channel-tile counter)",
                "linear.h lin_compute (OUT_CONV_H, lin_wide_write, ConvWindow.h_tiles)",
                lut=o.h_banks * (act + h_addr) * mux_luts(2) + 16,
                ff=8,
            )
        )
        x_phases = o.x_banks // math.gcd(up_lanes, o.x_banks)
        out.append(
            Line(
                U,
                "fused classifier: the dead ring slot (an 8-bit remainder), the 1x1 window, "
                "one step more (PC_DEC_FUSE); its copy is the linear lane's own instance of "
                f"the x2's loop in copy mode (dec_load_window, copy a constant): a load of "
                f"{up_lanes} lanes from x ({x_phases}:1 x {act}b a lane) and a store of "
                f"{up_lanes} lanes into wide (a wire a bank), bank addresses",
                "lanes.h PC_DEC_FUSE, decoder.h dec_fuse_window, dec_load_window (copy)",
                lut=8 * 8
                + 2 * 16
                + up_lanes * act * mux_luts(x_phases)
                + (o.x_banks + o.wide_banks) * w_addr,
                ff=2 * 16 + (up_lanes * act if x_phases > 4 else 0),
            )
        )
    out.append(
        Line(
            U,
            f"{DECODER_LOOPS} loops (counter, bound, FSM state), {DECODER_ADDR64} 64-bit "
            f"burst addresses, {DECODER_ADDR_PRODUCTS} address products (17 x 17b, once per "
            "burst), the decoder's steps in the linear lane (4 states, the band counters) "
            "and the side lane's turn (2 states)",
            "lanes.h PC_DEC_BAND, side_lane, decoder.h dec_store_band, decoder_io",
            lut=DECODER_LOOPS * o.per_loop[0] + DECODER_ADDR64 * 64 + 4 * 16 + 200,
            ff=DECODER_LOOPS * o.per_loop[1] + DECODER_ADDR64 * 64 + 4 * 16 + 120,
            dsp=DECODER_ADDR_PRODUCTS * mult_dsps(17, 17),
        )
    )
    return out


def table(ls: list[Line]) -> dict[str, dict[str, float]]:
    """The per-unit totals: {unit: {resource: amount}}."""
    out = {u: dict.fromkeys(RESOURCES, 0) for u in UNITS}
    for ln in ls:
        row = out[ln.unit]
        for r in RESOURCES:
            row[r] += getattr(ln, r)
    for row in out.values():
        row["lut"] = round(row["lut"])
        row["ff"] = round(row["ff"])
        row["bram36"] = round(row["bram36"], 1)
    return out


def line_dicts(ls: list[Line]) -> list[dict]:
    """The lines as JSON-ready dicts (LUT and FF rounded)."""
    out = []
    for ln in ls:
        d = asdict(ln)
        d["lut"], d["ff"] = round(ln.lut), round(ln.ff)
        out.append(d)
    return out
