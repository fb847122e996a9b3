"""Routing robustness: top-k margins of the gates against the fixed-point gate error (issue 14).

Usage::

    .venv/bin/python scripts/routing_margins.py --checkpoint PATH [--config NAME]
        [--profile lean] [--images 8] [--seed 10000] [--plot margins.png] [--json out.json]
    .venv/bin/python scripts/routing_margins.py --published   # the published statistics

For every (image, token, MoE block, task) decision, the margin is the gap between
the k-th and (k+1)-th float gate logit, in the base-2 units the hardware compares
(``log2(e)`` folded in). The gate error is golden's logit minus float's, split in
two: **upstream** (the LN2 output golden feeds the gate differs from float's) and
the **gate path's own** (golden's LN2 output through float gate weights, against
golden's logits: gate-weight and logit rounding). A decision is *within the
error* when its margin is below the largest total error of the two logits it
compares plus one logit LSB (equal raw logits tie, and the lower index wins); a
flip on a decision outside the error would mean the gate path is undersized.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from edgemoe.host.backends import Workload, get_backend
from edgemoe.host.images import scene_images
from edgemoe.host.profile import load_profile
from edgemoe.host.quantize import LOG2E
from edgemoe.models import DEFAULT_CONFIG, load_config


def model_from(args, cfg):
    if args.published:
        from edgemoe.models.synthetic import published_statistics_model

        return published_statistics_model(cfg, 0), "published statistics (synthetic)"
    from edgemoe.models.checkpoint import load_checkpoint
    from edgemoe.models.m3vit import M3ViT

    model = M3ViT(cfg, seed=0)
    load_checkpoint(model, args.checkpoint)
    return model.eval(), args.checkpoint


def analyse(wl: Workload, images: np.ndarray) -> dict:
    """Margins, errors and flips over every task and MoE block."""
    cfg, k = wl.cfg, wl.cfg.top_k
    lsb = wl.profile.attn_score.lsb  # one logit LSB: equal raw logits tie (lower index wins)
    margins, total_err, own_err, up_err, within, flips, flip_margin, flip_within = (
        [],
        [],
        [],
        [],
        [],
        [],
        [],
        [],
    )
    for task in cfg.task_names:
        ref = get_backend("torch").run(wl, images, task, record=True)
        out = get_backend("golden").run(wl, images, task, record=True)
        for b in cfg.moe_blocks:
            lf = ref.stages[f"block{b}.gate"] * LOG2E  # base-2 float logits
            lg = out.stages[f"block{b}.gate"] * LOG2E
            w = wl.state[f"blocks.{b}.mlp.gate.{task}.w_gate"].astype(np.float64)
            lg_float_gate = out.stages[f"block{b}.ln2"] @ w * LOG2E
            srt = np.sort(lf, axis=-1)[..., ::-1]
            m = srt[..., k - 1] - srt[..., k]
            err = np.abs(lg - lf)
            # the two logits that decide: the k-th and (k+1)-th of float
            order = np.argsort(-lf, axis=-1, kind="stable")
            pair = np.take_along_axis(err, order[..., k - 1 : k + 1], axis=-1).sum(-1)
            flip = (ref.stages[f"block{b}.route"] != out.stages[f"block{b}.route"]).any(-1)
            margins.append(m.ravel())
            total_err.append(err.ravel())
            own_err.append(np.abs(lg - lg_float_gate).ravel())
            up_err.append(np.abs(lg_float_gate - lf).ravel())
            near = m < pair + lsb
            within.append(near.ravel())
            flips.append(flip.ravel())
            flip_margin.append(m[flip])
            flip_within.append(near[flip])
    cat = np.concatenate
    margins, total_err, own_err, up_err = map(cat, (margins, total_err, own_err, up_err))
    within, flips, flip_margin, flip_within = map(cat, (within, flips, flip_margin, flip_within))
    pct = (50, 90, 99, 99.9)
    return {
        "decisions": int(margins.size),
        "margin_percentiles": {str(p): float(np.percentile(margins, p)) for p in (0.1, 1, 5, 50)},
        "margin_min": float(margins.min()),
        "gate_error_total": {str(p): float(np.percentile(total_err, p)) for p in pct},
        "gate_error_own": {str(p): float(np.percentile(own_err, p)) for p in pct},
        "gate_error_upstream": {str(p): float(np.percentile(up_err, p)) for p in pct},
        "gate_error_total_max": float(total_err.max()),
        "gate_error_own_max": float(own_err.max()),
        "within_error": int(within.sum()),
        "within_own_error": int((margins < 2 * own_err.max()).sum()),
        "flips": int(flips.sum()),
        "flip_margins": sorted(float(x) for x in flip_margin),
        "flips_outside_error": int((~flip_within).sum()),
        "_margins": margins,
        "_total_err": total_err,
        "_own_err": own_err,
    }


def plot(r: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    lo = max(min(r["_margins"].min(), r["_own_err"][r["_own_err"] > 0].min()), 1e-7)
    bins = np.logspace(np.log10(lo), np.log10(max(r["_margins"].max(), 1.0)), 80)
    ax.hist(r["_margins"], bins=bins, alpha=0.6, label="top-k margin (k-th - (k+1)-th)")
    ax.hist(r["_total_err"], bins=bins, alpha=0.5, label="|golden - float| logit, total")
    ax.hist(r["_own_err"], bins=bins, alpha=0.5, label="gate path's own error")
    for m in r["flip_margins"]:
        ax.axvline(max(m, lo), color="red", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("base-2 logit units")
    ax.set_ylabel("count")
    ax.set_title(f"{title}: {r['flips']} flips (red) in {r['decisions']} decisions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--profile", default="lean")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint")
    src.add_argument("--published", action="store_true")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--plot")
    ap.add_argument("--json")
    a = ap.parse_args()
    cfg = load_config(a.config)
    model, source = model_from(a, cfg)
    wl = Workload(cfg, load_profile(a.profile), model)
    r = analyse(wl, scene_images(cfg, a.images, a.seed))
    public = {k: v for k, v in r.items() if not k.startswith("_")}
    print(f"{cfg.name} / {a.profile} / {source} / {a.images} scene(s)")
    print(json.dumps(public, indent=1))
    if a.plot:
        plot(r, a.plot, f"{cfg.name} / {a.profile}")
        print(f"wrote {a.plot}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"source": source, "profile": a.profile, **public}, f, indent=1)


if __name__ == "__main__":
    main()
