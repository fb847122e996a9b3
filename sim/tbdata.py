"""Input files for the Vitis csim/cosim testbench (hls/tb/tb_top.cpp).

Writes ``bundle.bin``, ``images.bin`` (uint8, patch-major) and ``expected.bin``
(the golden model's int32 output: the tokens, and for a task with M³ViT's decoder
each image's logits after its tokens, chunk-planar) for one seeded model and ``--images`` images
(default 1: the image-major schedule; 2 or more: the expert-major one), so that
``make hls`` can run the C++ testbench with a bit-exact check against golden.

Usage: ``python -m edgemoe.sim.tbdata --out DIR [--config C] [--profile P] [--task T]
[--images N]``; prints the testbench's command-line arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.images import random_images, to_patches
from edgemoe.host.contracts.profile import DEFAULT_PROFILE, load_profile
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.export.bundle import pack
from edgemoe.host.export.quantize import quantize_model
from edgemoe.models.config import DEFAULT_CONFIG, load_config

from .golden import Golden


def write(out: Path, config: str, profile: str, task: int, seed: int, images: int = 1) -> list[str]:
    """Write the three files; return the testbench argv."""
    from edgemoe.models.m3vit import random_model

    cfg, prof = load_config(config), load_profile(profile)
    model = random_model(cfg, seed)
    qm = quantize_model({k: v.detach().numpy() for k, v in model.state_dict().items()}, cfg, prof)
    patches = to_patches(random_images(cfg, images, seed), cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bundle.bin").write_bytes(pack(qm, DEFAULT_TILING))
    patches.tofile(out / "images.bin")
    g = Golden(qm)
    tokens = g.run(patches, task).tokens
    if dp.decodes(cfg, task, 0):  # per image: the tokens, then the decoder's logits
        logits = g.decode(tokens, task).logits
        words = [
            np.concatenate([t.reshape(-1), dp.pack_map(cfg, lg, DEFAULT_TILING)])
            for t, lg in zip(tokens, logits, strict=True)
        ]
        np.concatenate(words).astype("<i4").tofile(out / "expected.bin")
    else:
        tokens.astype("<i4").tofile(out / "expected.bin")
    files = {
        n: str((out / f"{n}.bin").resolve()) for n in ("bundle", "images", "output", "expected")
    }
    return [
        files["bundle"],
        files["images"],
        files["output"],
        str(task),
        str(images),
        "0",
        files["expected"],
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgemoe.sim.tbdata")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--profile", default=DEFAULT_PROFILE)
    ap.add_argument("--task", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=1, help="2 or more: expert-major schedule")
    a = ap.parse_args(argv)
    if not 1 <= a.images <= 16:
        ap.error("--images must be in 1..16")
    print(" ".join(write(Path(a.out), a.config, a.profile, a.task, a.seed, a.images)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
