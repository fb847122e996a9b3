"""Torch vs golden over configs x profiles x tasks x seeds: the table of issue #2.

Usage: .venv/bin/python scripts/accuracy_table.py [--seeds 0 1 2] [--timing]
Prints, per (config, profile, task), the worst rel_rms / cosine / routing agreement
over the seeds and the saturation counts; with --timing, the median wall time per
image of golden and torch on the default config (5 runs after a warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import time

from edgemoe.host.app.fidelity import compare
from edgemoe.host.contracts.images import random_images
from edgemoe.host.contracts.profile import load_profile
from edgemoe.host.driver.backends import Workload, get_backend
from edgemoe.models import DEFAULT_CONFIG, load_config
from edgemoe.models.m3vit import random_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", default=["m3vit-mini", DEFAULT_CONFIG])
    ap.add_argument("--timing", action="store_true")
    a = ap.parse_args()
    torch_b, golden_b = get_backend("torch"), get_backend("golden")
    print(
        f"{'config':<20} {'profile':<9} {'task':<7} {'rel_rms(max)':>12} {'cosine(min)':>12} "
        f"{'routing(min)':>12} {'sat act':>8} {'sat w':>6}"
    )
    for cname in a.configs:
        cfg = load_config(cname)
        models = {s: random_model(cfg, s) for s in a.seeds}
        for pname in ("edge-moe", "lean"):
            prof = load_profile(pname)
            for task in cfg.task_names:
                rows = []
                for s in a.seeds:
                    wl = Workload(cfg, prof, models[s])
                    imgs = random_images(cfg, 1, s)
                    ref = torch_b.run(wl, imgs, task)
                    out = golden_b.run(wl, imgs, task)
                    rows.append(
                        (
                            compare(ref, out),
                            sum(out.saturations.values()),
                            wl.quantized.report.saturated,
                        )
                    )
                print(
                    f"{cname:<20} {pname:<9} {task:<7} "
                    f"{max(r[0].rel_rms for r in rows):>12.3e} "
                    f"{min(r[0].cosine for r in rows):>12.8f} "
                    f"{min(r[0].routing_agreement for r in rows):>12.4f} "
                    f"{sum(r[1] for r in rows):>8} {sum(r[2] for r in rows):>6}"
                )
    if a.timing:
        cfg = load_config(DEFAULT_CONFIG)
        wl = Workload(cfg, load_profile("lean"), random_model(cfg, 0))
        imgs = random_images(cfg, 1, 0)
        for b in (torch_b, golden_b):
            b.run(wl, imgs, "semseg")  # warm-up
            ts = []
            for _ in range(5):
                t0 = time.perf_counter()
                b.run(wl, imgs, "semseg")
                ts.append(time.perf_counter() - t0)
            print(
                f"{b.name}: median {1e3 * statistics.median(ts):.1f} ms per image "
                f"(runs: {', '.join(f'{1e3 * t:.1f}' for t in ts)})"
            )


if __name__ == "__main__":
    main()
