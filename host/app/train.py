"""The ``edgemoe train`` subcommand (the training itself: :mod:`edgemoe.models.train`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from edgemoe.host.app.args import add_options


def cmd_train(args: argparse.Namespace) -> int:
    from edgemoe.models.train import TrainOptions, train

    opts = TrainOptions(
        config=args.config,
        data=args.data,
        steps=args.steps,
        batch=args.batch,
        seed=args.seed,
        lr=args.lr,
        min_lr=args.min_lr,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        tasks=args.tasks,
        depth_weight=args.depth_weight,
        balance=args.balance,
        eval_every=args.eval_every,
        eval_images=args.eval_images,
        final_eval_images=args.final_eval_images,
    )
    if Path(sys.argv[0]).name == "edgemoe":
        command = shlex.join(["edgemoe", *sys.argv[1:]])
    else:  # called as a function (tests): the equivalent command line, every option spelled out
        command = shlex.join(["edgemoe", "train", *_spelled_out(args)])
    rec = train(
        opts,
        args.out,
        resume=args.resume,
        threads=args.threads,
        stop_after=args.stop_after,
        command=command,
        progress=not args.quiet,
    )
    state = "complete" if rec["complete"] else f"stopped at step {rec['steps']} (--resume)"
    print(
        f"{rec['config']}: {rec['steps']} steps in {rec['wall_seconds']:.0f} s "
        f"({rec['seconds_per_step']:.2f} s/step), {state}; wrote {rec['weights']} "
        f"({rec['weights_bytes'] / 2**20:.1f} MiB)"
    )
    for task, m in rec.get("heldout", {}).items():
        keys = (
            ("miou", "pixel_acc") if task == "semseg" else ("abs_err", "abs_rel", "rmse", "delta1")
        )
        shown = ", ".join(f"{k} {m[k]:.4f}" for k in keys)
        print(f"held-out ({rec['heldout_images']} scenes) {task}: {shown}")
    return 0


def _spelled_out(args: argparse.Namespace) -> list[str]:
    out = []
    for k, v in vars(args).items():
        if k in ("func", "command") or v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        out += [flag] if v is True else [flag, str(v)]
    return out


def add_parser(sub) -> None:
    """Add the ``train`` subcommand to the ``edgemoe`` parser."""
    t = sub.add_parser("train", help="train M3ViT on procedural or Cityscapes scenes")
    add_options(t, "config")
    t.add_argument(
        "--data",
        default="procedural",
        help="'procedural' (seeded street scenes) or a preprocessed Cityscapes folder "
        "({train,val}/{image,label_7,depth}/{i}.npy)",
    )
    t.add_argument("--steps", type=int, required=True, help="optimiser steps")
    t.add_argument("--batch", type=int, default=8, help="scenes per step")
    t.add_argument("--out", required=True, help="output stem: STEM.safetensors, STEM.json, …")
    t.add_argument("--resume", action="store_true", help="continue from STEM.state.*")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights, data and tasks")
    t.add_argument("--threads", type=int, default=1, help="torch threads (1: deterministic)")
    t.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    t.add_argument("--min-lr", type=float, default=1e-5, help="learning rate at the end")
    t.add_argument("--warmup", type=int, default=-1, help="warmup steps (default: 5%% of --steps)")
    t.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    t.add_argument(
        "--tasks",
        choices=["sample", "both"],
        default="sample",
        help="one seeded task per step, or every task every step",
    )
    t.add_argument("--depth-weight", type=float, default=0.1, help="weight of the depth L1 (m)")
    t.add_argument(
        "--balance", type=float, default=0.0, help="weight of the MoE load-balance term (0: off)"
    )
    t.add_argument(
        "--eval-every", type=int, default=-1, help="held-out evaluation period (default: steps/10)"
    )
    t.add_argument("--eval-images", type=int, default=16, help="held-out scenes per evaluation")
    t.add_argument(
        "--final-eval-images", type=int, default=64, help="held-out scenes of the final record"
    )
    t.add_argument(
        "--stop-after", type=int, default=None, help="stop after this step (resume later)"
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
