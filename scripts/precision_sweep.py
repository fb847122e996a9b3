"""Precision sweep: task-metric change to float, DSP48E2 and estimated latency per profile.

Usage::

    .venv/bin/python scripts/precision_sweep.py --checkpoint PATH [--config NAME]
        [--images 8] [--seed 10000] [--json sweep.json]
    .venv/bin/python scripts/precision_sweep.py --published

Candidates are the lean profile with 8-, 12-, 16- and 18-bit weights (linear,
gate and patch weights, each tensor its own binary point as the profile's
``fixed<W,*>`` says; biases stay 16 bits, per tensor) and the activation widths
that go with them, plus the edge-moe profile. Fidelity is golden against float on
held-out scenes (see :mod:`edgemoe.host.app.fidelity` for the task-metric definition);
DSP48E2 and latency come from ``edgemoe estimate``'s model (:mod:`edgemoe.host.estimate.perf`,
ZCU104, 300 MHz, one image per call).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from edgemoe.host.app.fidelity import measure
from edgemoe.host.contracts.fixedpoint import Fmt
from edgemoe.host.contracts.images import scene_images
from edgemoe.host.contracts.profile import Profile, check_profile, load_profile
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.driver.backends import Workload
from edgemoe.host.estimate.perf import DEVICES, estimate, our_design
from edgemoe.models import DEFAULT_CONFIG, load_config

WEIGHT_CLASSES = ("weight", "gate_weight", "patch_weight")
#: The compile-time integer bits the weight classes had before per-tensor binary points
#: (the "per-profile" scheme of the weight-only comparison).
COMPILE_TIME_INT_BITS = {"weight": 3, "gate_weight": 1, "patch_weight": 2}
ACT_CLASSES = ("act", "token_bias", "ln_stat")
#: (weight bits, activation bits) of the candidates derived from lean; activations keep
#: their 9 integer bits (the residual stream) and at least the pixels' 8 fraction bits.
CANDIDATES = ((8, 17), (12, 19), (16, 22), (18, 27))


def candidate(base: Profile, w_bits: int, a_bits: int) -> Profile:
    """``base`` with its weight formats ``w_bits`` wide and activations ``a_bits`` wide.

    Weights (and biases) keep a per-tensor binary point, activations their integer
    bits (the calibrated ranges); Q/K/V keep their integer bits with at most the
    activations' fraction bits.
    """
    f = dict(base.formats)
    for k in WEIGHT_CLASSES:
        f[k] = Fmt(w_bits, None)
    for k in ACT_CLASSES:
        f[k] = Fmt(a_bits, f[k].int_bits)
    qkv = f["attn_qkv"]
    f["attn_qkv"] = Fmt(qkv.int_bits + min(qkv.frac, f["act"].frac), qkv.int_bits)
    sc = f["attn_score"]
    f["attn_score"] = Fmt(sc.int_bits + min(sc.frac, 2 * f["attn_qkv"].frac), sc.int_bits)
    p = dataclasses.replace(base, name=f"w{w_bits}a{a_bits}", formats=f)
    check_profile(p)
    return p


def _weight_views(cfg, name: str):
    """(fold, unfold) of a weight tensor as the bundle holds it (host/export/quantize.py)."""
    import numpy as np

    from edgemoe.host.export.quantize import LOG2E, q_scale

    if name == "patch_embed.proj.weight":
        scale = (256 / 255) / np.asarray(cfg.pixel_std)[None, :, None, None]
        return (lambda w: w * scale), (lambda w: w / scale)
    if name.endswith("attn.qkv.weight"):
        qs = np.ones((3 * cfg.embed_dim, 1))
        qs[: cfg.embed_dim] = q_scale(cfg)
        return (lambda w: w * qs), (lambda w: w / qs)
    if name.endswith("w_gate"):
        return (lambda w: w * LOG2E), (lambda w: w / LOG2E)
    return (lambda w: w), (lambda w: w)


def weight_class(name: str) -> str | None:
    if name == "patch_embed.proj.weight":
        return "patch_weight"
    if name.endswith("w_gate"):
        return "gate_weight"
    if name.startswith("blocks.") and name.endswith("weight") and "norm" not in name:
        return "weight"
    return None


def weight_only(model, cfg, profile: Profile, bits: int, per_tensor: bool, images):
    """Float model with only its weights rounded: per-profile formats or per-tensor scales.

    Per-tensor: each tensor its own power-of-two scale, the fewest integer bits that
    hold its largest value (no headroom: export sees every weight). Returns
    (rel_rms, routing agreement) of the tokens against the unrounded model, per task.
    """
    import copy

    import numpy as np
    import torch

    from edgemoe.host.app.fidelity import rel_rms, routing
    from edgemoe.models.m3vit import normalize

    q = copy.deepcopy(model)
    sd = {k: v.detach().double().numpy() for k, v in q.state_dict().items()}
    for name, w in sd.items():
        cls = weight_class(name)
        if cls is None:
            continue
        fold, unfold = _weight_views(cfg, name)
        wf = fold(w)
        if per_tensor:
            m = float(np.abs(wf).max())
            ib = int(np.ceil(np.log2(m))) + 1 if m > 0 else 1
            fmt = Fmt(bits, ib)
        else:
            fmt = Fmt(bits, COMPILE_TIME_INT_BITS[cls])
        raw, _, _ = fmt.quantize(wf)
        sd[name] = unfold(fmt.to_float(raw))
    q.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in sd.items()})
    out = {}
    x = normalize(images, cfg)
    for task in cfg.task_names:
        ra, rb = {}, {}
        with torch.no_grad():
            a = model.backbone(x, task, record=ra).double().numpy()
            b = q.backbone(x, task, record=rb).double().numpy()
        routes = [k for k in ra if k.endswith(".route")]
        agree = routing([ra[k].numpy() for k in routes], [rb[k].numpy() for k in routes])[0]
        out[task] = (rel_rms(a, b), agree)
    return out


def scales_table(model, cfg, lean: Profile, images) -> list[dict]:
    """Weight-only error: per-profile compile-time formats vs per-tensor power-of-two scales."""
    rows = []
    print("\nweight-only rounding (float activations): per-profile formats vs per-tensor scales")
    print(f"{'bits':>4} {'scheme':<12} {'task':<7} {'rel_rms':>9} {'routing':>8}")
    for bits in (8, 12, 16):
        for per_tensor in (False, True):
            scheme = "per-tensor" if per_tensor else "per-profile"
            for task, (rr, agree) in weight_only(
                model, cfg, lean, bits, per_tensor, images
            ).items():
                rows.append(
                    {"bits": bits, "scheme": scheme, "task": task, "rel_rms": rr, "routing": agree}
                )
                print(f"{bits:>4} {scheme:<12} {task:<7} {rr:>9.2e} {agree:>8.4f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint")
    src.add_argument("--published", action="store_true")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--json")
    a = ap.parse_args()
    cfg = load_config(a.config)
    if a.published:
        from edgemoe.models.synthetic import published_statistics_model

        model, source = published_statistics_model(cfg, 0), "published statistics (synthetic)"
    else:
        from edgemoe.models.checkpoint import load_checkpoint
        from edgemoe.models.m3vit import M3ViT

        model = M3ViT(cfg, seed=0)
        load_checkpoint(model, a.checkpoint)
        model.eval()
        source = a.checkpoint
    lean = load_profile("lean")
    profiles = [candidate(lean, w, x) for w, x in CANDIDATES] + [load_profile("edge-moe")]
    images = scene_images(cfg, a.images, a.seed)
    board = DEVICES["zcu104"]
    rows = []
    refs: dict = {}
    print(f"{cfg.name} / {source} / {a.images} held-out scene(s)")
    print(
        f"{'profile':<10} {'weight':<12} {'act':<12} {'task':<7} {'delta':>8} {'rel_rms':>9} "
        f"{'routing':>8} {'sat':>5} {'DSP48E2':>8} {'ms/image':>9}"
    )
    for p in profiles:
        wl = Workload(cfg, p, model)
        est = estimate(cfg, p, our_design(p, DEFAULT_TILING), board, 300.0)
        for task in cfg.task_names:
            f, ref, _ = measure(wl, images, task, ref=refs.get(task))
            refs[task] = ref
            row = {
                "profile": p.name,
                "weight": str(p.weight),
                "act": str(p.act),
                "task": task,
                "metric": "1 - mIoU" if cfg.task_spec(task).kind == "classes" else "abs_rel",
                **f.to_dict(),
                "dsp48e2": est.resources["dsp48e2"],
                "latency_ms": est.latency_ms,
            }
            rows.append(row)
            print(
                f"{p.name:<10} {row['weight']:<12} {row['act']:<12} {task:<7} "
                f"{f.task_delta:>8.4f} {f.rel_rms:>9.2e} {f.routing_agreement:>8.4f} "
                f"{f.saturations:>5} {row['dsp48e2']:>8} {row['latency_ms']:>9.3f}"
            )
    scales = scales_table(model, cfg, lean, images)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(
                {"config": cfg.name, "source": source, "rows": rows, "scales": scales}, fh, indent=1
            )


if __name__ == "__main__":
    main()
