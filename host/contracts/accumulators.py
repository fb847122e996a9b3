"""Worst-case accumulator widths of every reduction: what golden, C++ and the estimate share.

The golden model accumulates in int64 and the tests prove every bound fits it;
the parameter header (:mod:`edgemoe.host.export.hls_params`) and the resource
estimate (:mod:`edgemoe.host.estimate.perf`) read the same numbers.
"""

from __future__ import annotations

from edgemoe.host.contracts.fixedpoint import Fmt
from edgemoe.host.contracts.profile import Profile
from edgemoe.models.config import ModelConfig


def accumulator_bits(cfg: ModelConfig, profile: Profile) -> dict[str, int]:
    """Worst-case signed accumulator width (bits, sign included) of every reduction.

    Each bound is ``max|a| * max|b| * K`` plus the largest aligned addend. In the
    linear unit the addend (bias, per-token bias) fits the range the products leave
    free in the width they need -- export keeps it there
    (:func:`edgemoe.host.export.quantize.linear_slack`), whatever the tensors' binary
    points -- so the width is the products'. The HLS C++ sizes
    its accumulators from the same numbers and the tests prove they fit (int64 for
    golden, 48 bits for the lean profile).
    """
    f = profile.formats

    def mag(fmt: Fmt) -> int:
        return max(-fmt.min_raw, fmt.max_raw)

    def bound(a: int, b: int, k: int, add: Fmt | None = None, shift: int = 0) -> int:
        total = a * b * k + (0 if add is None else mag(add) << shift)
        return total.bit_length() + 1

    def with_addend(a: int, b: int, k: int) -> int:
        return (a * b * k).bit_length() + 1  # the addend within linear_slack

    D, N = cfg.embed_dim, cfg.num_tokens
    hidden = max(cfg.mlp_hidden, cfg.expert_hidden)
    one = 1 << f["prob"].frac  # exp2 outputs and gate weights never exceed 1.0
    w, act = mag(f["weight"]), mag(f["act"])
    acc = bound(one, mag(f["attn_qkv"]), N)
    out = {
        "patch_embed": with_addend(mag(f["pixel"]), mag(f["patch_weight"]), cfg.patch_dim),
        "linear_in_dim": with_addend(act, w, D),
        "linear_in_hidden": with_addend(act, w, hidden),
        "gate": bound(act, mag(f["gate_weight"]), D),
        "attn_score": bound(mag(f["attn_qkv"]), mag(f["attn_qkv"]), cfg.head_dim),
        "attn_acc": acc,
        "attn_rescale": acc + f["prob"].frac,
        "moe_scale": bound(one, act, 1),
        "ln_sum": bound(act, 1, D),
        "ln_var": bound(mag(f["ln_stat"]) * D, mag(f["ln_stat"]) * D, 1),
        "ln_center": bound(
            2 * act << profile.units["ln_mean_guard"], 1 << profile.units["newton_frac"], 1
        ),
    }
    return out | decoder_accumulator_bits(cfg, profile)


def decoder_accumulator_bits(cfg: ModelConfig, profile: Profile) -> dict[str, int]:
    """The decoder's reductions, when a task has a ``pup`` head (empty otherwise).

    ``dec_conv_first``: ``conv_0`` on the LayerNorm's ``act`` output,
    ``K = k² · embed_dim``; ``dec_conv``: every later convolution on ``dec_feat``,
    ``K = k² · channels`` (the longest over tasks); both with the bias within
    :func:`~edgemoe.host.export.quantize.linear_slack`, like every linear-unit call.
    ``dec_upsample``: ``9a + 3b + 3c + d + 8`` of the bilinear ×2 unit.
    """
    f = profile.formats
    heads = [s.head for s in cfg.task_specs if s.head.kind == "pup"]
    if not heads:
        return {}

    def mag(fmt: Fmt) -> int:
        return max(-fmt.min_raw, fmt.max_raw)

    w, act, feat = mag(f["weight"]), mag(f["act"]), mag(f["dec_feat"])
    k_first = max(h.conv_kernel(0) ** 2 * cfg.embed_dim for h in heads)
    k_rest = max(h.conv_kernel(i) ** 2 * h.channels for h in heads for i in range(1, h.convs))
    return {
        "dec_conv_first": (act * w * k_first).bit_length() + 1,
        "dec_conv": (feat * w * k_rest).bit_length() + 1,
        "dec_upsample": (16 * feat + 8).bit_length() + 1,
    }
