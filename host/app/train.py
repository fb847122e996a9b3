"""The ``edgemoe train`` subcommand (the training itself: :mod:`edgemoe.models.train`).

Everything is checked before any work: PyTorch is there, ``--out`` is writable and
names no existing run (unless ``--force`` replaces it or ``--resume`` continues it).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from edgemoe.errors import EdgeMoeError
from edgemoe.host.app.args import HelpFormatter, add_options, int_range, need_torch, seed_arg
from edgemoe.host.app.outputs import check_output_file

#: Upper bounds where memory (or the schedule) would otherwise run out.
MAX_STEPS = 10_000_000
MAX_BATCH = 256
MAX_EVAL_IMAGES = 4096
MAX_THREADS = 1024


def check_out(out: str, force: bool, resume: bool) -> None:
    """``--out`` before any work: writable, and no run there unless ``--force`` or ``--resume``.

    Raises
    ------
    EdgeMoeError
        An empty or unwritable ``--out``; an existing weight file or record without
        ``--force``/``--resume``; ``--force`` with ``--resume``.
    """
    if not out.strip():
        raise EdgeMoeError("--out '': an empty path names no file")
    if force and resume:
        raise EdgeMoeError("--force starts the run again, --resume continues it: pick one")
    stem = Path(out)
    if stem.suffix == ".safetensors":
        stem = stem.with_suffix("")
    weights = stem.with_name(stem.name + ".safetensors")
    record = stem.with_name(stem.name + ".json")
    for path in (weights, record):
        if path.is_dir():
            raise EdgeMoeError(f"cannot write {path}: is a directory")
    check_output_file(str(weights), "--out")
    existing = [p for p in (weights, record) if p.exists()]
    if existing and not (force or resume):
        raise EdgeMoeError(
            f"--out {out}: {existing[0]} exists (--force to replace it, --resume to continue "
            "its run)"
        )


def cmd_train(args: argparse.Namespace) -> int:
    need_torch()
    check_out(args.out, args.force, args.resume)
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
        class_balance=args.class_balance,
        init=args.init or "",
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
    if rec.get("rank", 0) != 0:  # torchrun: rank 0 alone reports
        return 0
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
    t = sub.add_parser(
        "train",
        help="train M3ViT on procedural or Cityscapes scenes",
        description="Train M3ViT (the float model, PyTorch) on procedural street scenes or "
        "preprocessed Cityscapes, and write STEM.safetensors (the weights, fp16), STEM.json "
        "(the training record) and STEM.state.* (to --resume). An existing --out is kept "
        "unless --force or --resume.",
        formatter_class=HelpFormatter,
    )
    add_options(t, "config")
    t.add_argument(
        "--data",
        default="procedural",
        help="'procedural' (seeded street scenes) or a preprocessed Cityscapes folder "
        "({train,val}/{image,label_7,depth}/{i}.npy)",
    )
    t.add_argument("--steps", type=int_range(1, MAX_STEPS), required=True, help="optimiser steps")
    t.add_argument("--batch", type=int_range(1, MAX_BATCH), default=8, help="scenes per step")
    t.add_argument(
        "--out",
        required=True,
        help="output stem: STEM.safetensors, STEM.json, STEM.state.* (refused if it exists, "
        "unless --force or --resume)",
    )
    t.add_argument("--force", action="store_true", help="replace an existing run at --out")
    t.add_argument("--resume", action="store_true", help="continue the run at --out")
    t.add_argument("--seed", type=seed_arg, default=0, help="seed of the weights, data and tasks")
    t.add_argument(
        "--threads",
        type=int_range(1, MAX_THREADS),
        default=1,
        help="torch threads (1: deterministic)",
    )
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
        "--class-balance",
        type=float,
        default=0.0,
        help="semseg class weights (median freq / freq) ** X (0: unweighted)",
    )
    t.add_argument(
        "--init",
        default=None,
        metavar="CHECKPOINT",
        help="start from this checkpoint's backbone, norms and any heads (default: random)",
    )
    t.add_argument(
        "--eval-every", type=int, default=-1, help="held-out evaluation period (default: steps/10)"
    )
    t.add_argument(
        "--eval-images",
        type=int_range(1, MAX_EVAL_IMAGES),
        default=16,
        help="held-out scenes per evaluation",
    )
    t.add_argument(
        "--final-eval-images",
        type=int_range(1, MAX_EVAL_IMAGES),
        default=64,
        help="held-out scenes of the final record",
    )
    t.add_argument(
        "--stop-after", type=int, default=None, help="stop after this step (resume later)"
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
