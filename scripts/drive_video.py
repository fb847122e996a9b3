"""Write the demo's procedural drive as a folder of PNG frames (``make demo-video``).

Usage: ``python scripts/drive_video.py OUT_DIR [--config NAME] [--seconds S] [--fps F]
[--seed N]``; then ``edgemoe run --video OUT_DIR`` runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from edgemoe.host.app.video import drive_frames
from edgemoe.models.config import DEFAULT_CONFIG, load_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    cfg = load_config(a.config)
    frames = drive_frames(cfg, max(1, round(a.seconds * a.fps)), a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    for old in a.out.glob("frame_*.png"):
        old.unlink()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(a.out / f"frame_{i:04d}.png")
    print(
        f"{len(frames)} frames of {cfg.name}'s {cfg.image_size[0]}x{cfg.image_size[1]} -> {a.out}/"
    )


if __name__ == "__main__":
    main()
