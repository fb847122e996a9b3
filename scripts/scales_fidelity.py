"""Before/after fidelity of per-tensor weight scales on the shipped trained checkpoints.

Usage::

    .venv/bin/python scripts/scales_fidelity.py [--sources tiny mini published]
        [--images 4] [--seed 10000] [--json out.json]

For each weight set (the shipped tiny and mini checkpoints; ``published``: the
published deployment's statistics on the tiny, :mod:`edgemoe.models.synthetic`),
profile (lean, edge-moe) and task, golden against float on held-out scenes (the
acceptance test's images, ``tests/host/app/test_trained_fixedpoint.py``): **before** is the
profile with the
compile-time weight formats it shipped with until per-tensor scales (every weight
``fixed<16,3>``, biases ``<16,5>``, attention biases ``<16,4>``, patch weights
``<16,2>``, gates ``<16,1>``), **after** the profile as it is (``fixed<16,*>``: a
binary point per tensor, in the bundle's scale table). Both run the same kernel
arithmetic; only the binary points differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from edgemoe.host.app.fidelity import measure
from edgemoe.host.contracts.fixedpoint import Fmt
from edgemoe.host.contracts.images import scene_images
from edgemoe.host.contracts.profile import load_profile
from edgemoe.host.driver.backends import Workload
from edgemoe.models import load_config
from edgemoe.models.checkpoint import load_checkpoint
from edgemoe.models.m3vit import M3ViT

SOURCES = {"tiny": "m3vit-tiny-128x256", "mini": "m3vit-mini", "published": "m3vit-tiny-128x256"}
CHECKPOINTS = Path(__file__).resolve().parents[1] / "models" / "checkpoints"
#: The compile-time formats the profiles had before per-tensor scales.
BEFORE = {
    "weight": "fixed<16,3>",
    "bias": "fixed<16,5>",
    "attn_bias": "fixed<16,4>",
    "patch_weight": "fixed<16,2>",
    "gate_weight": "fixed<16,1>",
}


def compile_time(profile):
    f = {**profile.formats, **{k: Fmt.parse(v) for k, v in BEFORE.items()}}
    return dataclasses.replace(profile, formats=f)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--json")
    ap.add_argument("--sources", nargs="+", choices=tuple(SOURCES), default=["tiny", "mini"])
    a = ap.parse_args()
    rows = []
    print(
        f"{'checkpoint':<20} {'profile':<9} {'task':<7} {'scheme':<12} {'rel_rms':>9} "
        f"{'cosine':>10} {'routing':>8} {'sat':>4} {'task d':>7}"
    )
    for source in a.sources:
        cname = SOURCES[source]
        cfg = load_config(cname)
        if source == "published":
            from edgemoe.models.synthetic import published_statistics_model

            model = published_statistics_model(cfg, 0)
        else:
            model = M3ViT(cfg, seed=0)
            load_checkpoint(model, CHECKPOINTS / f"{cname}.safetensors")
            model.eval()
        images = scene_images(cfg, a.images, a.seed)
        for pname in ("lean", "edge-moe"):
            after = load_profile(pname)
            for task in cfg.task_names:
                ref = None
                for scheme, prof in (("per-profile", compile_time(after)), ("per-tensor", after)):
                    f, ref, _ = measure(Workload(cfg, prof, model), images, task, ref=ref)
                    row = {"checkpoint": source, "profile": pname, "task": task, "scheme": scheme}
                    rows.append({**row, **f.to_dict()})
                    print(
                        f"{source:<20} {pname:<9} {task:<7} {scheme:<12} {f.rel_rms:>9.2e} "
                        f"{f.cosine:>10.7f} {f.routing_agreement:>8.4f} {f.saturations:>4} "
                        f"{f.task_delta:>7.4f}",
                        flush=True,
                    )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
