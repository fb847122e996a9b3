"""Generate the HLS parameter header of one build (config, profile, tiling).

Every compile-time constant of the kernel comes from here, computed from the
same YAML files and the same Python functions as the golden model and the
bundle packer: shapes, fixed-point formats, nonlinear-unit tables (as integer
literals), tile sizes, bundle offsets and status codes. The header of the
default deployment is committed at ``hls/include/edgemoe/params_default.h`` so
a Vitis user needs no Python; a test fails when it is stale.

Usage: ``python -m edgemoe.host.export.hls_params --config NAME --profile NAME --out FILE``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.profile import (
    DEFAULT_PROFILE,
    FORMAT_NAMES,
    Profile,
    config_hash,
    load_profile,
)
from edgemoe.host.contracts.regmap import (
    STATUS as STATUS,  # re-exported: the driver and tests read it here
)
from edgemoe.host.contracts.regmap import STATUS_TABLE
from edgemoe.host.contracts.scratch import MAX_GROUP, scratch_layout
from edgemoe.host.contracts.tables import ln_eps_raw, unit_tables
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling, tiles
from edgemoe.host.export.bundle import (
    FORMAT_VERSION,
    HEADER_BYTES,
    MAGIC,
    SCALES,
    bundle_bytes,
    layout,
    scale_entries,
)
from edgemoe.models.config import DEFAULT_CONFIG, ModelConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HEADER = ROOT / "hls" / "include" / "edgemoe" / "params_default.h"

#: Stages of a block a run can stop after: ``debug_stop`` 1 is after the embedding,
#: ``2 + block * STAGES_PER_BLOCK + stage`` after that stage of that block (0 runs the
#: whole backbone; see :func:`debug_stop_code`).
DEBUG_STAGES = ("ln1", "qkv", "attn", "proj", "ln2", "gate", "mlp")
MAX_IMAGES = 1024
#: LayerNorm elements per cycle at most (each lane costs about 4 DSP48E2: x^2, the
#: 31x21-bit normalising product, gamma); also bounded by the buffers' banking.
LN_LANES_MAX = 12
#: Linear unit: weight tiles in flight ahead of the one computing (LIN_AHEAD + 1 tile
#: buffers), and the shortest pass over the rows (the accumulators' read-to-write
#: distance in the MAC pipeline).
LIN_AHEAD = 2
LIN_MIN_PASS = 8
#: Attention rows interleaved per row unit: covers the running-state update chain so each
#: unit issues one update per cycle. The chain, read m -> |s - m| -> exp2 (two ROM reads,
#: the interpolating multiply, the shift and saturate) -> acc * e (2 DSPs) -> round -> add
#: -> write, is estimated at 17-18 cycles at 3.33 ns (hls/README.md; not synthesised
#: here); 20 leaves a margin. The review of issue 15 found 4 too short (II ~4-5).
ATTN_INTERLEAVE = 20


#: The reductions whose width the C++ declares (config.h: the linear unit's accumulator
#: covers the first four; attention.h: the accumulators). The other bounds of
#: ``accumulator_bits`` are checked by the tests, not read by the kernel.
KERNEL_ACCUMULATORS = ("patch_embed", "linear_in_dim", "linear_in_hidden", "gate", "attn_acc")
#: The decoder's reductions the linear unit's accumulator also covers (config.h).
DECODER_ACCUMULATORS = ("dec_conv_first", "dec_conv")


def ln_lanes(t: Tiling) -> int:
    """LayerNorm lanes of a build: LN_LANES_MAX within min(LIN_IN, LIN_OUT)."""
    return min(t.lin_in, t.lin_out, LN_LANES_MAX)


#: The debug stop that returns a ``pup`` task's final tokens alone
#: (:func:`edgemoe.host.contracts.decoder.tokens_stop_code`): what ``debug_stop`` 0
#: returns for a task whose head the kernel does not run.
TOKENS_STAGE = "tokens"


def _decoder_task(cfg: ModelConfig, task: str | int | None) -> str | None:
    """The name of ``task`` where the kernel decodes it (a ``pup`` head), else None (no
    task, a raw id out of range: the kernel refuses it, or another head)."""
    if task is None or (isinstance(task, int) and not 0 <= task < len(cfg.task_names)):
        return None
    name = cfg.task_names[cfg.task_id(task)]
    return name if dp.stage_names(cfg, name) else None


def debug_boundaries(cfg: ModelConfig, task: str | int | None = None) -> list[str]:
    """Every layer boundary a debug stop can return, in execution order: the backbone's,
    then, for a ``task`` the kernel decodes, its decoder's stages (``dec.norm`` ..
    ``dec.logits``, golden's ``decode_stages``)."""
    names = ["embed"]
    for i in range(cfg.depth):
        for s in DEBUG_STAGES:
            if s != "gate" or cfg.is_moe(i):
                names.append(f"block{i}.{s}")
    dec = _decoder_task(cfg, task)
    return names + (dp.stage_names(cfg, dec) if dec else [])


def debug_stop_code(cfg: ModelConfig, stage: str, task: str | int | None = None) -> int:
    """``debug_stop`` value that ends a run after ``stage``.

    ``"embed"`` -> 1; ``"block{i}.{s}"`` -> ``2 + i * len(DEBUG_STAGES) + index(s)``;
    0 runs the whole backbone (and the task's decoder, where the kernel decodes it). For
    a ``task`` with a ``pup`` head also :data:`TOKENS_STAGE` (its final tokens alone,
    :func:`~edgemoe.host.contracts.decoder.tokens_stop_code`) and its decoder's stages
    ``"dec.*"`` (:func:`~edgemoe.host.contracts.decoder.stop_code`).

    Raises
    ------
    ValueError
        No such stage (for that task).
    """
    if stage == "embed":
        return 1
    if stage == TOKENS_STAGE or stage.startswith("dec."):
        dec = _decoder_task(cfg, task)
        if dec is None:
            raise ValueError(f"no stage {stage!r}: only a task with a pup head has it")
        if stage == TOKENS_STAGE:
            return dp.tokens_stop_code(cfg)
        if stage not in dp.stage_names(cfg, dec):
            raise ValueError(f"no stage {stage!r} in the decoder of task {dec}")
        return dp.stop_code(cfg, dec, stage)
    blk, _, s = stage.partition(".")
    i = int(blk.removeprefix("block")) if blk.removeprefix("block").isdigit() else -1
    if not blk.startswith("block") or not 0 <= i < cfg.depth or s not in DEBUG_STAGES:
        raise ValueError(f"no stage {stage!r}")
    if s == "gate" and not cfg.is_moe(i):
        raise ValueError(f"block {i} has no gate")
    return 2 + i * len(DEBUG_STAGES) + DEBUG_STAGES.index(s)


def debug_stage_name(cfg: ModelConfig, code: int, task: str | int | None = None) -> str:
    """Inverse of :func:`debug_stop_code` (``ValueError`` for 0 or an invalid code)."""
    if code == 1:
        return "embed"
    dec = _decoder_task(cfg, task)
    if dec is not None and code >= dp.tokens_stop_code(cfg):
        if code == dp.tokens_stop_code(cfg):
            return TOKENS_STAGE
        names = dp.stage_names(cfg, dec)
        k = code - dp.tokens_stop_code(cfg) - 1
        if k >= len(names):
            raise ValueError(f"debug_stop {code} out of range for task {dec}")
        return names[k]
    s = code - 2
    if s < 0 or s >= cfg.depth * len(DEBUG_STAGES):
        raise ValueError(f"debug_stop {code} out of range")
    name = f"block{s // len(DEBUG_STAGES)}.{DEBUG_STAGES[s % len(DEBUG_STAGES)]}"
    debug_stop_code(cfg, name)  # rejects a gate on a dense block
    return name


def decoded_stage(
    cfg: ModelConfig, debug_stop: int, task: str | int | None, t: Tiling = DEFAULT_TILING
) -> dp.Stage | None:
    """The decoder stage a call stores after the final tokens: the logits for
    ``debug_stop`` 0, the stage of a decoder stop; None where the call does not decode
    (another head, a backbone or the tokens stop, no task or one the kernel refuses).

    Raises
    ------
    ValueError
        A code above the tokens stop that the task's decoder does not have.
    """
    dec = _decoder_task(cfg, task)
    if dec is None or not dp.decodes(cfg, dec, debug_stop):
        return None
    plan = dp.decoder_plan(cfg, dec, t)
    if debug_stop == 0:
        return plan.stages[-1]
    return plan.stage(debug_stage_name(cfg, debug_stop, dec))


def output_layout(
    cfg: ModelConfig,
    debug_stop: int = 0,
    task: str | int | None = None,
    t: Tiling = DEFAULT_TILING,
) -> tuple[int, int]:
    """(words per image in the output buffer, words per token of the token rows stored).

    A whole run stores ``[tokens][embed_dim]`` per image; a backbone debug stop stores
    the stage's ``[tokens][width]`` at a stride of ``tokens * MAX_STAGE_WIDTH`` words. A
    call that decodes (a ``task`` with a ``pup`` head, :func:`decoded_stage`) stores the
    final tokens ``[tokens][embed_dim]``, then its stage's output
    (:func:`~edgemoe.host.contracts.decoder.output_words` per image); its
    :data:`TOKENS_STAGE` stop stores what a whole run of another head does.

    Raises
    ------
    ValueError
        A code the kernel refuses (for ``task``).
    """
    stage = decoded_stage(cfg, debug_stop, task, t)
    if stage is not None:
        return dp.output_words(cfg, task, debug_stop, t), cfg.embed_dim
    if debug_stop == 0 or debug_stage_name(cfg, debug_stop, task) == TOKENS_STAGE:
        return cfg.num_tokens * cfg.embed_dim, cfg.embed_dim
    width = debug_stage_width(cfg, debug_stage_name(cfg, debug_stop, task))
    return cfg.num_tokens * _max_stage_width(cfg), width


def max_output_words(
    cfg: ModelConfig, t: Tiling = DEFAULT_TILING, decoder_stops: bool = False
) -> int:
    """The most words per image a call of any task stores: a whole run (the logits after
    the tokens where the kernel decodes), a backbone debug stop and, with
    ``decoder_stops``, a decoder stage's stop (the largest maps: the driver allocates
    those only when such a stop is asked for)."""
    words = [output_layout(cfg, 0)[0], output_layout(cfg, 1)[0]]
    for task in cfg.task_names:
        if decoder_stops:
            words.append(dp.max_output_words(cfg, task, t))
        else:
            words.append(output_layout(cfg, 0, task, t)[0])
    return max(words)


def _max_stage_width(cfg: ModelConfig) -> int:
    return max(3 * cfg.embed_dim, cfg.num_experts)


def debug_stage_width(cfg: ModelConfig, stage: str) -> int:
    """Words per token that a debug stop leaves in the output buffer."""
    s = stage.rsplit(".", 1)[-1]
    return {"qkv": 3 * cfg.embed_dim, "gate": cfg.num_experts}.get(s, cfg.embed_dim)


def _cname(name: str) -> str:
    return name.upper()


def _array(ctype: str, name: str, values) -> str:
    vals = [str(int(v)) for v in values]
    lines = []
    for i in range(0, len(vals), 12):
        lines.append("    " + ", ".join(vals[i : i + 12]) + ",")
    return f"constexpr {ctype} {name}[{len(vals)}] = {{\n" + "\n".join(lines) + "\n};"


def generate(cfg: ModelConfig, profile: Profile, t: Tiling = DEFAULT_TILING) -> str:
    """The C++ text of the parameter header: its sections in order."""
    ents = {e.name: e for e in layout(cfg, profile, t)}
    sections = [
        _model_section(cfg),
        _format_section(profile),
        _unit_section(cfg, profile),
        _accumulator_section(cfg, profile),
        _tiling_section(t),
        _gelu_rom_section(profile, t),
        _bundle_section(cfg, profile, t),
        _block_offset_section(cfg, ents),
        _scale_section(cfg, ents),
        _expert_section(cfg, ents),
        _decoder_section(cfg, ents, t),
        _control_section(),
        _scratch_section(cfg, t),
    ]
    out = _prologue(cfg, profile, t)
    for lines in sections:
        out.extend(lines)
    out.extend(_epilogue())
    return "\n".join(out) + "\n"


def _prologue(cfg: ModelConfig, profile: Profile, t: Tiling) -> list[str]:
    build = f"{cfg.name} / {profile.name} / {t.key}"
    return [
        f"// Generated by edgemoe.host.export.hls_params for {build}.",
        "// Do not edit: regenerate with `python -m edgemoe.host.export.hls_params`.",
        "// clang-format off",
        "#ifndef EDGEMOE_PARAMS_H_",
        "#define EDGEMOE_PARAMS_H_",
        "",
        "#include <stdint.h>",
        "",
        "namespace edgemoe {",
        "namespace params {",
        "",
    ]


def _epilogue() -> list[str]:
    return [
        "",
        "}  // namespace params",
        "}  // namespace edgemoe",
        "",
        "#endif  // EDGEMOE_PARAMS_H_",
        "// clang-format on",
    ]


def _model_section(cfg: ModelConfig) -> list[str]:
    """The model's shapes (models/configs) and which blocks are MoE."""
    consts = {
        "EMBED_DIM": cfg.embed_dim,
        "NUM_TOKENS": cfg.num_tokens,
        "NUM_PATCHES": cfg.num_patches,
        "PATCH_DIM": cfg.patch_dim,
        "DEPTH": cfg.depth,
        "NUM_HEADS": cfg.num_heads,
        "HEAD_DIM": cfg.head_dim,
        "MLP_HIDDEN": cfg.mlp_hidden,
        "NUM_EXPERTS": cfg.num_experts,
        "EXPERT_HIDDEN": cfg.expert_hidden,
        "TOP_K": cfg.top_k,
        "NUM_TASKS": len(cfg.tasks),
        "NUM_MOE_BLOCKS": len(cfg.moe_blocks),
    }
    out = ["// ---- model (models/configs) ----"]
    out += [f"constexpr int {k} = {v};" for k, v in consts.items()]
    out.append(
        _array("bool", "IS_MOE", [cfg.is_moe(i) for i in range(cfg.depth)])
        .replace("1,", "true,")
        .replace("0,", "false,")
    )
    return out


def _format_section(profile: Profile) -> list[str]:
    """Each fixed-point format's width, and its fraction bits where they are compile-time."""
    out = [
        "",
        "// ---- fixed-point formats (models/profiles): width W, fraction bits F ----",
        "// fixed<W,*>: only the width is compile-time; each tensor's binary point is in the",
        "// bundle's scale table (scale.h)",
    ]
    for name in FORMAT_NAMES:
        fm = profile.formats[name]
        out.append(f"constexpr int {_cname(name)}_W = {fm.width};  // {fm}")
        if not fm.per_tensor:
            out.append(f"constexpr int {_cname(name)}_F = {fm.frac};")
    return out


def _unit_section(cfg: ModelConfig, profile: Profile) -> list[str]:
    """The nonlinear units' sizes and their tables as integer literals."""
    tab = unit_tables(profile)
    out = ["", "// ---- nonlinear units (edgemoe.host.contracts.tables) ----"]
    out += [f"constexpr int {_cname(k)} = {v};" for k, v in profile.units.items()]
    out += [
        f"constexpr int64_t LN_EPS_RAW = {ln_eps_raw(cfg.ln_eps, profile)};",
        _array("int32_t", "EXP2_TABLE", tab.exp2),
        _array("int32_t", "RECIP_SEED", tab.recip),
        _array("int32_t", "RSQRT_SEED", tab.rsqrt),
        "/// The attention lane's own copies of the tables both DATAFLOW processes read (UG1448",
        "/// 214-169: a process reads its own memory, never one another process reads).",
        _array("int32_t", "EXP2_TABLE_ATTN", tab.exp2),
        _array("int32_t", "RECIP_SEED_ATTN", tab.recip),
    ]
    return out


def _accumulator_section(cfg: ModelConfig, profile: Profile) -> list[str]:
    """The accumulator widths the kernel declares."""
    from edgemoe.host.contracts.accumulators import accumulator_bits

    out = [
        "",
        "// ---- accumulator widths the kernel declares, bits with sign ----",
        "// (edgemoe.host.contracts.accumulators; the tests prove every reduction fits)",
    ]
    acc = accumulator_bits(cfg, profile)
    out += [f"constexpr int ACC_{_cname(k)}_BITS = {acc[k]};" for k in KERNEL_ACCUMULATORS]
    out += [
        "/// The task decoders' convolutions on the linear unit (0: no pup decoder).",
        *[f"constexpr int ACC_{_cname(k)}_BITS = {acc.get(k, 0)};" for k in DECODER_ACCUMULATORS],
    ]
    one = 1 << profile.formats["prob"].frac
    st = profile.formats["ln_stat"]
    ln_t1 = (max(-st.min_raw, st.max_raw) * cfg.embed_dim).bit_length() + 1
    out += [
        "/// LayerNorm's T1: the sum of a token's ln_stat values.",
        f"constexpr int ACC_LN_STAT_SUM_BITS = {ln_t1};",
        "/// The softmax running sum: at most one 1.0 per key.",
        f"constexpr int ACC_ATTN_SUM_BITS = {(cfg.num_tokens * one).bit_length() + 1};",
    ]
    return out


def _tiling_section(t: Tiling) -> list[str]:
    """The datapath's build-time sizes."""
    return [
        "",
        "// ---- tiling ----",
        f"constexpr int LIN_IN = {t.lin_in};",
        f"constexpr int LIN_OUT = {t.lin_out};",
        f"constexpr int ATTN_P = {t.p};",
        "/// Linear unit: tiles in flight ahead of the one computing; shortest pass over the rows.",
        f"constexpr int LIN_AHEAD = {LIN_AHEAD};",
        f"constexpr int LIN_MIN_PASS = {LIN_MIN_PASS};",
        "/// LayerNorm elements per cycle (within the activation buffers' banking).",
        f"constexpr int LN_LANES = {ln_lanes(t)};",
        "/// Query rows each attention row unit serves in turn (its update chain's latency).",
        f"constexpr int ATTN_L = {ATTN_INTERLEAVE};",
        f"constexpr int AXI_BITS = {t.axi_bits};",
    ]


def _gelu_rom_section(profile: Profile, t: Tiling) -> list[str]:
    """The GELU table as the linear epilogue reads it: one copy per two output lanes.

    Entry ``k`` of the table (``edgemoe.host.contracts.tables``) is ``GELU_ROM[c][k % 2][k // 2]``
    in every copy ``c``; the odd half is padded with a 0 to the even half's length. Lane ``o``
    of the epilogue reads copy ``o // 2`` (a dual-port ROM serves two lanes), one entry of
    each half per output (``gelu.h``), so no ROM is read more often than its ports allow.
    """
    table = [int(v) for v in unit_tables(profile).gelu]
    half = (len(table) + 1) // 2
    even = table[0::2]
    odd = table[1::2] + [0] * (half - len(table[1::2]))
    copies = (t.lin_out + 1) // 2

    def rows(vals: list[int]) -> str:
        chunks = (vals[i : i + 12] for i in range(0, half, 12))
        return "\n".join("        " + ", ".join(map(str, c)) + "," for c in chunks)

    body = "\n".join(
        f"    {{\n      {{\n{rows(even)}\n      }},\n      {{\n{rows(odd)}\n      }},\n    }},"
        for _ in range(copies)
    )
    return [
        "",
        "// ---- the GELU table per pair of epilogue lanes (gelu.h) ----",
        "/// Entry k of the table is GELU_ROM[copy][k % 2][k / 2]; lane o reads copy o / 2.",
        f"constexpr int GELU_HALF = {half};",
        f"constexpr int GELU_COPIES = {copies};",
        f"constexpr int32_t GELU_ROM[GELU_COPIES][2][GELU_HALF] = {{\n{body}\n}};",
    ]


def _bundle_section(cfg: ModelConfig, profile: Profile, t: Tiling) -> list[str]:
    """The bundle header's fields the kernel checks, and its size."""
    return [
        "",
        "// ---- bundle (edgemoe.host.export.bundle) ----",
        f"constexpr uint32_t BUNDLE_MAGIC = 0x{MAGIC:08X}u;",
        f"constexpr uint32_t BUNDLE_VERSION = {FORMAT_VERSION};",
        f"constexpr uint32_t CONFIG_HASH = 0x{config_hash(cfg, profile):08X}u;",
        f"constexpr uint32_t TILING_WORD = 0x{t.word:08X}u;",
        f"constexpr uint32_t HEADER_BYTES = {HEADER_BYTES};",
        f"constexpr uint64_t BUNDLE_BYTES = {bundle_bytes(cfg, profile, t)}ull;",
    ]


#: BlockOffsets' fields, in order: each one's bundle tensor is ``blocks.i.`` + the field
#: with its first ``_`` read as ``.``; ``experts`` is expert 0's fc1 weights.
BLOCK_OFFSET_FIELDS = (
    "ln1_g",
    "ln1_b",
    "qkv_w",
    "qkv_b",
    "proj_w",
    "proj_b",
    "ln2_g",
    "ln2_b",
    "fc1_w",
    "fc1_b",
    "fc2_w",
    "fc2_b",
    "experts",
)


def _block_offset_section(cfg: ModelConfig, ents: dict) -> list[str]:
    """The byte offsets of the patch embedding and of each block's tensors."""
    out = [
        f"constexpr uint64_t OFF_TOKEN_BIAS = {ents['token_bias'].offset}ull;",
        f"constexpr uint64_t OFF_PATCH_W = {ents['patch.w'].offset}ull;",
        "/// Byte offsets of one block's tensors (0 where the block has no such tensor).",
        "struct BlockOffsets {",
    ]
    out += [f"  uint64_t {fld};" for fld in BLOCK_OFFSET_FIELDS]
    out += ["  uint64_t gate_w[NUM_TASKS];", "};", "constexpr BlockOffsets BLOCK[DEPTH] = {"]
    for i in range(cfg.depth):
        pre = f"blocks.{i}"

        def off(n: str, pre: str = pre) -> int:
            e = ents.get(f"{pre}.{n}")
            return e.offset if e else 0

        vals = [off(n.replace("_", ".", 1)) for n in BLOCK_OFFSET_FIELDS[:-1]]
        vals.append(off("experts.0.fc1.w"))
        gates = [off(f"gate.{task}.w") for task in cfg.task_names]
        out.append(
            "    {"
            + ", ".join(f"{v}ull" for v in vals)
            + ", {"
            + ", ".join(f"{g}ull" for g in gates)
            + "}},"
        )
    out.append("};")
    return out


def _scale_section(cfg: ModelConfig, ents: dict) -> list[str]:
    """Where the scale table is, and each call's row in it."""
    rows_at = {wname: k for k, (wname, _) in enumerate(scale_entries(cfg))}
    out = [
        "/// The scale table (export.bundle.scale_entries): one word per weight tensor of",
        "/// the linear unit, w_frac | addend_frac << 8; the index of each call's word.",
        f"constexpr uint64_t OFF_SCALES = {ents[SCALES].offset}ull;",
        f"constexpr int NUM_SCALES = {len(rows_at)};",
        f"constexpr int SCALE_PATCH = {rows_at['patch.w']};",
        "/// Scale-table rows of one block's calls (0 where the block has no such call); expert",
        "/// e's fc1 is at experts + 2 e, its fc2 one after.",
        "struct BlockScales {",
    ]
    out += [f"  int {fld};" for fld in ("qkv", "proj", "fc1", "fc2", "experts")]
    out += ["  int gate[NUM_TASKS];", "};", "constexpr BlockScales SCALE_AT[DEPTH] = {"]
    for i in range(cfg.depth):
        pre = f"blocks.{i}"
        vals = [
            rows_at.get(f"{pre}.{n}.w", 0) for n in ("qkv", "proj", "fc1", "fc2", "experts.0.fc1")
        ]
        gates = [rows_at.get(f"{pre}.gate.{task}.w", 0) for task in cfg.task_names]
        out.append("    {" + ", ".join(map(str, vals)) + ", {" + ", ".join(map(str, gates)) + "}},")
    out.append("};")
    return out


#: DecConv's fields (one convolution of a task's decoder), in order.
DEC_CONV_FIELDS = (
    "w_off", "b_off", "scale", "k", "c_in", "c_pad", "c_out", "h", "w", "src_h", "src_w",
    "fused_up", "relu", "band_rows", "band_cols", "k_tiles", "o_tiles", "src_map", "dst_map",
    "stop", "up_stop", "out_words", "up_words", "ring_rps", "ring_rows",
)  # fmt: skip


def _decoder_section(cfg: ModelConfig, ents: dict, t: Tiling) -> list[str]:
    """The task decoders' plan (:mod:`edgemoe.host.contracts.decoder`): tensor offsets,
    scale rows, map shapes, bands, ping-pong maps and debug-stop codes."""
    plans = dp.decoder_plans(cfg, t)
    rows_at = {wname: k for k, (wname, _) in enumerate(scale_entries(cfg))}
    most = max((sum(s.kind in (dp.CONV, dp.LOGITS) for s in p.stages) for p in plans), default=0)
    win_rows = max(1, max((dp.window_rows(p) for p in plans), default=1))
    out_words = max((dp.max_output_words(cfg, p.task, t) for p in plans), default=0)
    out = [
        "",
        "// ---- task decoders (edgemoe.host.contracts.decoder; issue 24) ----",
        f"constexpr int DEC_MAX_CONVS = {max(1, most)};",
        f"constexpr bool DEC_ANY = {'true' if most else 'false'};  // a task has a decoder",
        f"constexpr uint32_t DEC_TOKENS_STOP = {dp.tokens_stop_code(cfg)};",
        f"constexpr uint64_t DEC_MAP_OFF[2] = {{{plans[0].map_offsets[0]}ull, "
        f"{max(p.map_offsets[1] for p in plans)}ull}};",
        "/// One image's maps (buffer set b's follow set a's), and both sets' (the scratch the",
        "/// decoder needs).",
        f"constexpr uint64_t DEC_SET_BYTES = {dp.decoder_set_bytes(cfg, t)}ull;",
        f"constexpr uint64_t DEC_SCRATCH_BYTES = {dp.decoder_scratch_bytes(cfg, t)}ull;",
        "/// Rows of the largest band window (conv_0's: the token grid), and the most words",
        "/// per image a decoding call's output takes (tokens + its largest stage).",
        f"constexpr int DEC_WIN_ROWS = {win_rows};",
        f"constexpr uint64_t DEC_OUTPUT_WORDS = {out_words}ull;",
        "/// One convolution: bundle offsets, scale row, shapes (after any fused x2), input",
        "/// channels per tap in the weight rows (c_pad), the band (rows x cols; the bands",
        "/// tile the map row-major), debug-stop codes (up_stop: its fused x2's, 0 if none)",
        "/// and the words per image its stage's output and its x2's take in the output.",
        f"constexpr int DEC_CHUNK = {dp.chunk_width(cfg, t) if most else t.lin_out};"
        "  // output channels per call",
        "struct DecConv {",
        *[f"  {'uint64_t' if f.endswith('_off') else 'int'} {f};" for f in DEC_CONV_FIELDS],
        "};",
        "struct DecTask {",
        "  int convs;  ///< 0: no pup decoder (the tokens are the output)",
        "  uint64_t norm_g, norm_b;",
        "  int norm_stop, norm_words, out_h, out_w, out_c;",
        "  int fused;  ///< the classifier runs inside the last convolution's bands",
        "  DecConv conv[DEC_MAX_CONVS];",
        "};",
        "constexpr DecTask DECODER[NUM_TASKS] = {",
    ]
    for plan in plans:
        convs = [s for s in plan.stages if s.kind in (dp.CONV, dp.LOGITS)]
        if not convs:
            out.append("    {0, 0ull, 0ull, 0, 0, 0, 0, 0, 0, {}},")
            continue
        pre = f"decoders.{plan.task}"
        rows = []
        for i, s in enumerate(convs):
            up = f"dec.up_{i}"
            vals = {
                "w_off": f"{ents[s.tensor + '.w'].offset}ull",
                "b_off": f"{ents[s.tensor + '.b'].offset}ull",
                "scale": rows_at[s.tensor + ".w"],
                "k": s.k,
                "c_in": s.in_shape[2],
                "c_pad": dp.padded_channels(s.in_shape[2], t),
                "c_out": s.shape[2],
                "h": s.shape[0],
                "w": s.shape[1],
                "src_h": s.src_shape[0],
                "src_w": s.src_shape[1],
                "fused_up": int(s.fused_up),
                "relu": int(s.relu),
                "band_rows": s.bands[0].rows,
                "band_cols": s.bands[0].cols,
                "k_tiles": s.k_tiles,
                "o_tiles": s.o_tiles,
                "src_map": s.src_map,
                "dst_map": s.dst_map,
                "stop": s.code,
                "up_stop": plan.stage(up).code if s.fused_up else 0,
                "out_words": dp.stage_words(cfg, s, t),
                "up_words": dp.stage_words(cfg, plan.stage(up), t) if s.fused_up else 0,
                "ring_rps": s.ring_rps,
                "ring_rows": s.ring_rows,
            }
            rows.append("{" + ", ".join(str(vals[f]) for f in DEC_CONV_FIELDS) + "}")
        oh, ow, oc = plan.out_shape
        out.append(
            f"    {{{len(convs)}, {ents[pre + '.norm.g'].offset}ull, "
            f"{ents[pre + '.norm.b'].offset}ull, {plan.stage('dec.norm').code}, "
            f"{dp.stage_words(cfg, plan.stage('dec.norm'), t)}, {oh}, {ow}, {oc}, "
            f"{int(plan.fused)},"
        )
        out += ["     {" + rows[0] + ","] + [f"      {r}," for r in rows[1:]]
        out[-1] = out[-1] + "}},"
    out.append("};")
    return out


def _expert_section(cfg: ModelConfig, ents: dict) -> list[str]:
    """One expert's stride and its tensors' offsets from its fc1 weights."""
    moe = [i for i in range(cfg.depth) if cfg.is_moe(i)]
    if moe:
        i = moe[0]
        e0 = ents[f"blocks.{i}.experts.0.fc1.w"].offset
        stride = ents[f"blocks.{i}.experts.1.fc1.w"].offset - e0 if cfg.num_experts > 1 else 0
        rel = {
            n: ents[f"blocks.{i}.experts.0.{n}"].offset - e0 for n in ("fc1.b", "fc2.w", "fc2.b")
        }
    else:
        stride, rel = 0, {"fc1.b": 0, "fc2.w": 0, "fc2.b": 0}
    out = [
        "/// Expert e of an MoE block starts at BLOCK[i].experts + e * EXPERT_STRIDE.",
        f"constexpr uint64_t EXPERT_STRIDE = {stride}ull;",
    ]
    out += [
        f"constexpr uint64_t EXPERT_{_cname(n.replace('.', '_'))} = {v}ull;" for n, v in rel.items()
    ]
    return out


def _control_section() -> list[str]:
    """The status codes, the debug stages and the most images a call takes."""
    out = [
        "",
        "// ---- control (docs/design.md) ----",
        "/// Return codes (edgemoe.host.regmap.STATUS_TABLE); anything but OK leaves the output",
        "/// untouched.",
    ]
    out += [
        f"constexpr uint32_t STATUS_{st.name} = {st.code};  // {st.meaning}" for st in STATUS_TABLE
    ]
    out.append(f"constexpr int STAGES_PER_BLOCK = {len(DEBUG_STAGES)};")
    out += [f"constexpr int STAGE_{s.upper()} = {k};" for k, s in enumerate(DEBUG_STAGES)]
    out.append(f"constexpr uint32_t MAX_IMAGES = {MAX_IMAGES};")
    return out


def _scratch_section(cfg: ModelConfig, t: Tiling) -> list[str]:
    """The expert-major group's scratch layout and the output buffer's widest row."""
    sl = scratch_layout(cfg, t)
    out = [
        "/// Expert-major batched mode: images per group and one image's scratch slot",
        "/// (edgemoe.host.contracts.scratch).",
        f"constexpr int MAX_GROUP = {MAX_GROUP};",
    ]
    out += [
        f"constexpr uint64_t SCRATCH_{k.upper()} = {getattr(sl, k)}ull;"
        for k in ("row", "h", "count", "token", "weight", "list_stride", "slot")
    ]
    out += [
        "/// Largest output row of a debug stop, in words (the qkv stage).",
        f"constexpr int MAX_STAGE_WIDTH = {_max_stage_width(cfg)};",
        f"constexpr int OUT_TILES_MAX = {max(tiles(n, t.lin_out) for n in _outs(cfg))};",
    ]
    return out


def _outs(cfg: ModelConfig) -> list[int]:
    D = cfg.embed_dim
    return [3 * D, D, cfg.mlp_hidden, cfg.expert_hidden, cfg.num_experts]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgemoe.host.export.hls_params")
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--profile", default=DEFAULT_PROFILE)
    ap.add_argument("--tiling", default=f"{DEFAULT_TILING.lin_in}x{DEFAULT_TILING.lin_out}")
    ap.add_argument("--p", type=int, default=DEFAULT_TILING.p)
    ap.add_argument("--axi-bits", type=int, default=DEFAULT_TILING.axi_bits)
    ap.add_argument("--out", default=str(DEFAULT_HEADER))
    a = ap.parse_args(argv)
    text = generate(
        load_config(a.config), load_profile(a.profile), Tiling.parse(a.tiling, a.p, a.axi_bits)
    )
    Path(a.out).write_text(text)
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
