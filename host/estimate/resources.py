"""Resource model of the kernel, operator by operator (ESTIMATES, not synthesis).

Every line of the table counts one C++ construct of ``hls/`` (file and function named on
the line) as Vitis would build it, in the form the HLS review prescribes for the fixed
code (``hls/README.md``): per-lane GELU ROMs, partitioned EXP2 ROMs, one narrow
division per bank walk, attention / LayerNorm / routing state at its real widths with
bounded shift amounts, per-row scalars read once, one read and one write per ``x`` bank
per ``lin_pass`` iteration. Every width and count the lines use comes from one table,
:class:`Operators` (built by :func:`operators` from the config, profile and tiling), so a
line can be checked, or changed, in one place when the C++ differs.

Costing rules (UltraScale+ fabric; the rates are judgement where no document is cited):

* multiply: DSP48E2, 27 x 18 signed, partial products (:func:`mult_dsps`);
* add / subtract / compare of w bits: w LUTs (a LUT per bit beside the CARRY8), its
  result registered: w FFs;
* k:1 mux per bit: a LUT6 selects 4:1, two 2:1 muxes with a shared select share a LUT6
  (:func:`mux_luts`);
* barrel shifter of w bits by a run-time amount in 0..a: ceil(bits(a) / 2) levels of
  4:1 muxes, w LUTs per level, registered once;
* division by a constant the C++ cannot reduce to a shift: a pipelined divider core,
  one w-bit subtractor per quotient bit (w^2 LUTs, 2 w^2 FFs);
* ROM: BRAM36 by aspect ratio, or LUT-ROM (a LUT6 per 64 entries and bit, per read);
* 32-deep arrays of state: LUTRAM (RAM32M16: 8 LUTs per 32 x 14 bits).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edgemoe.host.contracts.accumulators import accumulator_bits
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.scratch import MAX_GROUP
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
    "rotate networks",
    "attention units",
    "attention finish",
    "layernorm",
    "routing",
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
#: (port, reads, writes) of the four bundles.
AXI_PORTS = (
    ("weights", True, False),
    ("images", True, False),
    ("output", True, True),
    ("scratch", True, True),
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


def _const_div(w: int) -> tuple[float, float]:
    return float(w * w), float(2 * w * w)


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
            # attn_store at II 2: HEAD_DIM products per row, two cycles each
            ("mean * 1/S", hd // 2, qkv + u["attn_guard"] + 3, newton),
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
    ln_var_w: int  # D * T2 - T1^2
    exp2_w: int  # EXP2_FRAC + 1: mantissa
    exp2_amount: int  # bounded shift of exp2_prob: EXP2_FRAC + 2
    epi_amount: int  # bounded linear_shift amounts: 0..lin_acc_w
    finish_amount: int  # softmax_finish shift p - ATTN_GUARD: 0..attn_sum_w
    ln_amount: int  # layernorm normalise shift: 0..ln_centred_w + newton_w
    route_amount: int  # routing gate shift: 0..newton_w + prob_w
    # ROMs (params_*.h): entries x declared bits
    gelu_entries: int
    rom_w: int  # the tables are int32_t
    exp2_entries: int
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


def _walks(t: Tiling, embed: int, wide_cols: int) -> tuple[tuple[str, int, int], ...]:
    """Bank walks whose bank count is not a power of two (a power of two divides by a
    shift): x (LIN_OUT banks), LayerNorm gamma / beta (LN_LANES banks), the bias
    (LIN_OUT)."""
    out = []
    x_bits, w_bits = _bits(embed), _bits(wide_cols)
    for where, banks, bits in (
        ("linear.h side_word: merge load from x", t.lin_out, x_bits),
        ("linear.h move_rows: x", t.lin_out, x_bits),
        ("park.h park_row: x load (2) and store", t.lin_out, x_bits),
        ("park.h park_row: x load (2) and store", t.lin_out, x_bits),
        ("park.h park_row: x load (2) and store", t.lin_out, x_bits),
        ("stages.h embed_load: token bias into x", t.lin_out, x_bits),
        ("park.h resume_image: x", t.lin_out, x_bits),
        ("stages.h write_rows: x", t.lin_out, x_bits),
        ("layernorm.h ln_accumulate_group: x", t.lin_out, x_bits),
        ("layernorm.h ln_normalise_group: x", t.lin_out, x_bits),
        ("linear.h linear_unit: bias loader", t.lin_out, w_bits),
        ("layernorm.h ln_normalise_group: gamma", ln_lanes(t), x_bits),
        ("layernorm.h ln_normalise_group: beta", ln_lanes(t), x_bits),
    ):
        if banks & (banks - 1):
            out.append((where, banks, bits))
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
    ln_var = 2 * ln_t1 + _bits(cfg.embed_dim) + 1
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
        ln_var_w=ln_var,
        exp2_w=u["exp2_frac"] + 1,
        exp2_amount=u["exp2_frac"] + 2,
        epi_amount=lin_acc,
        finish_amount=(cfg.num_tokens * (1 << f["prob"].frac)).bit_length(),
        ln_amount=ln_centred + newton,
        route_amount=newton + f["prob"].width + 1,
        gelu_entries=u["gelu_range"] * (1 << u["gelu_lut_bits"]) + 1,
        rom_w=32,
        exp2_entries=(1 << u["exp2_lut_bits"]) + 1,
        recip_entries=1 << u["recip_lut_bits"],
        rsqrt_entries=3 << (u["rsqrt_lut_bits"] - 1),
        gelu_rom=gelu_rom,
        rotate_mux="range",
        div_walks=_walks(t, cfg.embed_dim, wide_cols),
        control_mults=(
            # lanes.h linear_lane: uint64_t(image) * run.out_stride (int sign-extended x
            # uint64_t), three sites
            ("uint64_t(image) * out_stride", 3, 32, 64),
            # linear.h linear_unit: pl.T = OT * IT; pl.total's two products (int x int)
            ("LinearPlan T and total", 3, 32, 32),
        ),
        loops=72,
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
        "attention finish": "attention.h softmax_finish (attn_store, II 2), newton.h reciprocal",
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

    # ---- linear epilogue (per output lane) ----
    U = "linear epilogue"
    L = o.lin_out
    aw = o.lin_acc_w + 1
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
    add(
        U,
        "x write data 4:1 (embed, residual, expert, delta) and address 3:1 (r, r + 1, token)",
        "linear.h linear_output (one read, one write per bank)",
        L,
        (o.act_w * mux_luts(4) + _bits(o.tokens * -(-o.embed // o.x_banks)) * mux_luts(3), 0),
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
    if o.gelu_rom == "bram":
        add(
            U,
            f"GELU ROM per lane: {L} x {o.gelu_entries} x {o.rom_w}b, dual port",
            "gelu.h gelu (GELU_TABLE, a copy per lane)",
            bram36=L * bram36(o.gelu_entries, o.rom_w),
        )
    else:
        half = -(-o.gelu_entries // 2)
        add(
            U,
            f"GELU LUT-ROM per lane: {L} x (even + odd halves of {half}) x {o.rom_w}b",
            "gelu.h gelu (GELU_TABLE, a copy per lane)",
            L,
            (_lutrom(half, o.rom_w) + _lutrom(o.gelu_entries - half, o.rom_w), 0),
        )

    # ---- rotate networks (banked.h bank_walk) ----
    U = "rotate networks"
    act = o.act_w
    nets = (
        # (where, banks, lanes, grain, bits, store?)
        ("linear.h lin_compute: epilogue -> wide", o.wide_banks, o.lin_out, o.lin_out, act, True),
        ("linear.h side_word: gather -> h", o.h_banks, o.row_lanes, o.row_lanes, act, True),
        ("linear.h side_word: merge <- x", o.x_banks, o.row_lanes, o.row_lanes, act, False),
        ("linear.h move_rows: <- x / -> h", o.x_banks, o.row_lanes, o.row_lanes, act, False),
        ("layernorm.h ln_accumulate_group: <- x", o.x_banks, o.ln_lanes, o.ln_lanes, act, False),
        ("layernorm.h ln_normalise_group: <- x", o.x_banks, o.ln_lanes, o.ln_lanes, act, False),
        ("layernorm.h ln_normalise_group: -> h", o.h_banks, o.ln_lanes, o.ln_lanes, act, True),
        ("park.h park_row: <- x (2)", o.x_banks, o.row_lanes, o.row_lanes, act, False),
        ("park.h park_row: <- x (2)", o.x_banks, o.row_lanes, o.row_lanes, act, False),
        ("park.h park_row: <- h", o.h_banks, o.row_lanes, o.row_lanes, act, False),
        ("park.h park_row: -> x", o.x_banks, o.row_lanes, o.row_lanes, act, True),
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
            f"one division by {banks} ({bits}b) and bank_phase per walk",
            "banked.h bank_walk / bank_phase via " + where,
            2,
            _const_div(bits),
        )

    # ---- attention units (per row unit; attention.h attn_key) ----
    U = "attention units"
    P, hd = o.attn_p, o.head_dim
    qk_w = 2 * o.attn_qkv_w
    aa = o.attn_acc_w
    add(
        U,
        f"{P} q.k trees of {hd} products ({qk_w}b), first level in the DSPs",
        "attention.h attention_score",
        P,
        _tree(hd, qk_w, absorbed=1),
    )
    add(
        U,
        "narrow to the score: rounding add, saturate",
        "attention.h attention_score (fixed.h narrow)",
        P,
        plus(_adder(qk_w + 6), _saturate(qk_w + 6, o.attn_score_w)),
    )
    add(
        U,
        f"s > m, s - m, |.|, max update ({o.attn_score_w}b)",
        "attention.h softmax_update",
        P,
        plus(
            _adder(o.attn_score_w + 1),
            _adder(o.attn_score_w + 1),
            _adder(o.attn_score_w + 1),
            (o.attn_score_w * 0.5, 0),
        ),
    )
    add(
        U,
        f"exp2: interpolation add, bounded shift (0..{o.exp2_amount}), saturate",
        "exp2.h exp2_parts / exp2_prob",
        P,
        plus(
            _adder(o.exp2_w + 1),
            _adder(o.exp2_w),
            _shifter(o.exp2_w, o.exp2_amount),
            _adder(o.exp2_w),
            _saturate(o.exp2_w, o.prob_w - 1),
        ),
    )
    add(
        U,
        f"EXP2_TABLE_ATTN per unit: LUT-ROM {o.exp2_entries} x {o.rom_w}b, 2 reads",
        "exp2.h exp2_parts (partitioned per unit)",
        P,
        (2 * _lutrom(o.exp2_entries, o.rom_w), 0),
    )
    add(
        U,
        f"S update: rounding add + 1, S + e, select ({o.attn_sum_w}b)",
        "attention.h softmax_update",
        P,
        plus(_adder(o.attn_sum_w), _adder(o.attn_sum_w), (o.attn_sum_w * 0.5, 0)),
    )
    add(
        U,
        f"{P} x {hd} state updates ({aa}b): operand select, rounding add, + v << PROB_F, "
        "acc + prod, result select",
        "attention.h softmax_update softmax_acc",
        P * hd,
        plus((aa * 0.5, 0), _adder(aa), _adder(aa), _adder(aa), (aa * 0.5, aa)),
    )
    add(
        U,
        f"row state in LUTRAM: {P} x {hd} acc + m + S, {o.attn_l} deep",
        "attention.h attention (row_acc, row_m, row_sum)",
        1,
        (
            P * hd * _lutram(o.attn_l, aa)
            + P * (_lutram(o.attn_l, o.attn_score_w) + _lutram(o.attn_l, o.attn_sum_w)),
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

    # ---- attention finish (attn_store at II 2) ----
    U = "attention finish"
    add(
        U,
        f"unit select: {P}:1 of S and {hd} acc ({aa}b)",
        "attention.h attn_store_units",
        1,
        ((hd + 1) * aa * mux_luts(P), (hd + 1) * aa),
    )
    add(
        U,
        f"{hd} shifts acc >> (p - ATTN_GUARD) ({aa}b, 0..{o.finish_amount}) with rounding",
        "attention.h softmax_finish",
        hd,
        plus(_shifter(aa, o.finish_amount), _adder(aa)),
    )
    add(
        U,
        f"{hd} output rounding adds and saturations ({o.attn_mean_w + o.newton_w}b)",
        "attention.h softmax_finish",
        hd,
        plus(_adder(o.attn_mean_w + o.newton_w), _saturate(o.attn_mean_w + o.newton_w, act)),
    )
    recip = plus(
        (o.attn_sum_w, o.attn_sum_w),  # bit_length priority encoder
        _shifter(o.newton_arg_w, o.attn_sum_w),
        (_lutrom(o.recip_entries, o.rom_w), 0),
        _adder(o.newton_arg_w),
        _adder(o.newton_arg_w),
        _adder(o.newton_w),
    )
    add(
        U,
        "reciprocal: bit length, normalise shift, seed LUT-ROM, Newton rounding adds",
        "newton.h reciprocal (RECIP_SEED_ATTN)",
        1,
        recip,
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
    s1_w = act + _bits(o.embed)
    add(
        U,
        f"S1, T1, T2 trees of {Ln} + accumulators",
        "layernorm.h ln_accumulate",
        1,
        plus(
            _tree(Ln, act),
            _tree(Ln, o.ln_stat_w),
            _tree(Ln, 2 * o.ln_stat_w),
            _adder(s1_w),
            _adder(o.ln_sum_w),
            _adder(o.ln_var_w),
        ),
    )
    gm = o.ln_centred_w - act - 1
    add(
        U,
        f"mean = div_round(S1 << GM, D): constant divider ({s1_w + gm}b)",
        "layernorm.h ln_finish",
        1,
        _const_div(s1_w + gm),
    )
    add(
        U,
        f"var = div_round(D T2 - T1^2, D^2): subtract, constant divider ({o.ln_var_w}b)",
        "layernorm.h ln_finish",
        1,
        plus(_adder(o.ln_var_w), _const_div(o.ln_var_w)),
    )
    add(
        U,
        "rsqrt: bit length, normalise shift, seed LUT-ROM, Newton adds",
        "newton.h rsqrt (RSQRT_SEED)",
        1,
        plus(
            (o.ln_var_w, o.ln_var_w),
            _shifter(o.newton_arg_w, o.ln_var_w),
            (_lutrom(o.rsqrt_entries, o.rom_w), 0),
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
    prod = o.ln_centred_w + o.newton_w
    add(
        U,
        f"{Ln} lanes: centre, shift ({prod}b, 0..{o.ln_amount}) + round, saturate, "
        "+ beta, round, saturate",
        "layernorm.h ln_normalise",
        Ln,
        plus(
            _adder(o.ln_centred_w),
            _shifter(prod, o.ln_amount),
            _adder(prod),
            _saturate(prod, o.ln_norm_w),
            _adder(o.ln_norm_w + 17),
            _adder(o.ln_norm_w + 17),
            _saturate(o.ln_norm_w + 17, act),
        ),
    )

    # ---- routing (moe.h route_tokens, one token per cycle) ----
    U = "routing"
    E, sw = o.experts, o.attn_score_w
    add(
        U,
        f"max of {E} logits ({sw}b): compare-select tree",
        "moe.h moe_max",
        E - 1,
        plus(_adder(sw), (sw * 0.5, 0)),
    )
    add(
        U,
        f"{E} lanes: l - m, exp2 interpolation, bounded shift, saturate",
        "moe.h moe_exp, exp2.h exp2_prob",
        E,
        plus(
            _adder(sw + 1),
            _adder(o.exp2_w + 1),
            _adder(o.exp2_w),
            _shifter(o.exp2_w, o.exp2_amount),
            _adder(o.exp2_w),
            _saturate(o.exp2_w, o.prob_w - 1),
        ),
    )
    add(
        U,
        f"EXP2_TABLE per lane: {E} LUT-ROMs {o.exp2_entries} x {o.rom_w}b, 2 reads",
        "moe.h moe_exp (partitioned per lane)",
        E,
        (2 * _lutrom(o.exp2_entries, o.rom_w), 0),
    )
    add(U, f"sum of {E} probabilities", "moe.h moe_exp", 1, _tree(E, o.prob_w))
    add(
        U,
        "reciprocal: bit length, normalise shift, seed LUT-ROM, Newton adds",
        "newton.h reciprocal (RECIP_SEED)",
        1,
        recip,
    )
    add(
        U,
        f"ranks: {E} x {E} comparisons ({sw}b) and counts",
        "moe.h moe_topk / moe_rank",
        E * E,
        (sw / 2 + 2, 1),
    )
    add(
        U,
        f"{E} gate weights: shift ({o.route_amount}b) + round, clamp to [0, 1]",
        "moe.h moe_topk",
        E,
        plus(
            _shifter(o.route_amount, o.route_amount),
            _adder(o.route_amount),
            _saturate(o.route_amount, o.prob_w),
        ),
    )
    add(
        U,
        f"{E} queue counters and writes",
        "moe.h moe_topk",
        E,
        plus(_adder(_bits(o.tokens)), (_bits(o.tokens) * 2, 0)),
    )

    # ---- buffer-set muxes (lanes.h run_images: one lane_step, sets swapped) ----
    U = "buffer-set muxes"
    if two_sets:
        for name, banks, depth in (
            ("x", o.x_banks, o.tokens * -(-o.embed // o.x_banks)),
            ("h", o.h_banks, o.tokens * -(-o.embed // o.h_banks)),
            ("wide", o.wide_banks, o.tokens * -(-o.wide_cols // o.wide_banks)),
        ):
            bits = _bits(depth) + 2 * act + 2  # address, write data, read data, ce / we
            add(
                U,
                f"{name}: {banks} banks x 2 ports x 2 sets x {bits}b, 2:1",
                "lanes.h run_images, lane_step (ALLOCATION limit 1)",
                banks * 2 * 2,
                (bits * mux_luts(2), 0),
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
        "tables, LN parameters",
        "stages.h layernorm_block (gamma / beta), newton.h seeds",
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
        "s_axilite: 7 arguments (64b pointers), ap_ctrl_hs, ap_return",
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
        f"scale table: {o.scales} x 16b LUTRAM, linear_shift decode",
        "scale.h ScaleTable, linear_shift",
        1,
        (-(-16 * o.scales // 64) + 4 * 16, 64),
    )
    add(
        U,
        "dataflow handshakes, stream and lane_step control",
        "linear.h lin_stream, lanes.h lane_step",
        1,
        o.dataflow_control,
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
