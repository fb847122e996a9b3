"""Routing robustness: top-k margins of the gates against the fixed-point gate error (issue 14).

The analysis is :func:`edgemoe.host.app.fidelity.routing_margins`; this script prints it
and draws the figure.

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

from edgemoe.host.app.fidelity import routing_margins
from edgemoe.host.contracts.images import scene_images
from edgemoe.host.contracts.profile import load_profile
from edgemoe.host.driver.backends import Workload
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
    r = routing_margins(wl, scene_images(cfg, a.images, a.seed))
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
