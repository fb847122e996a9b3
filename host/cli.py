"""The ``edgemoe`` command line.

Every error caused by bad input is one line on stderr and exit code 2; a
failed verification (budgets missed) exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.models.config import DEFAULT_CONFIG, load_config

from .backends import Workload, get_backend
from .bench import DEFAULT_BACKENDS, MIN_RUNS, cmd_bench
from .bundle import layout, pack, validate, write_atomic, write_bundle
from .images import random_images
from .profile import DEFAULT_PROFILE, config_hash, load_profile
from .quantize import quantize_model
from .run import add_parser as add_run_parser
from .run import check_batch
from .scratch import MAX_BATCH
from .tiling import DEFAULT_TILING, Tiling
from .verify import (
    compare,
    first_difference,
    layer_table,
    pairs,
    task_output_check,
    with_top_k,
    within_budget,
)


def _write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` through a temporary file: never a partial file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise EdgeMoeError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_plot(path: Path, table: list[dict], title: str) -> None:
    """The per-layer error plot, written atomically."""
    from .plots import layer_error_plot

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
        os.close(fd)
    except OSError as e:
        raise EdgeMoeError(f"cannot write {path}: {e.strerror}") from None
    try:
        layer_error_plot(table, Path(tmp), title)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _build_model(cfg, seed: int, checkpoint: str | None):
    """The float model: a checkpoint loaded into it, else a seeded random init.

    Returns
    -------
    tuple[M3ViT, list[str]]
        The model in eval mode and the checkpoint loader's one-line notices.
    """
    from edgemoe.models.checkpoint import load_checkpoint
    from edgemoe.models.m3vit import M3ViT, random_model

    if checkpoint is None:
        return random_model(cfg, seed), []
    model = M3ViT(cfg, seed=seed)
    notices = load_checkpoint(model, checkpoint)
    return model.eval(), notices


#: Public name of the same function, for :mod:`edgemoe.api` (the commands keep the
#: private one, which tests patch).
build_model = _build_model


def cmd_verify(args: argparse.Namespace) -> int:
    cfg = with_top_k(load_config(args.config), args.top_k)
    profile = load_profile(args.profile)
    task = cfg.task_names[cfg.task_id(_task_arg(args.task, cfg))]
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if len(names) < 2:
        raise EdgeMoeError("--backends needs at least two backends, e.g. torch,golden")
    backends = [get_backend(n) for n in names]
    if args.images < 1:
        raise EdgeMoeError("--images must be at least 1")
    model, notices = _build_model(cfg, args.seed, args.checkpoint)
    for n in notices:
        print(f"notice: {n}", file=sys.stderr)
    wl = Workload(cfg, profile, model)
    images = random_images(cfg, args.images, args.seed)
    outputs = {b.name: b.run(wl, images, task, record=True) for b in backends}

    table = layer_table(outputs)
    cols = [k for k in table[0] if k != "stage"] if table else []
    print(
        f"{cfg.name} / {profile.name} / task {task} / top_k {cfg.top_k} / seed {args.seed} / "
        f"{args.images} image(s)"
    )
    print(
        f"{'boundary':<16}" + "".join(f"{c:>18}" for c in cols) + "   (rel_rms; route: agreement)"
    )
    for row in table:
        print(f"{row['stage']:<16}" + "".join(f"{row.get(c, float('nan')):>18.3e}" for c in cols))

    result = {
        "config": cfg.name,
        "profile": profile.name,
        "task": task,
        "top_k": cfg.top_k,
        "seed": args.seed,
        "images": args.images,
        "checkpoint": args.checkpoint,
        "weight_saturations": wl.quantized.report.saturated if profile else 0,
        "seconds": {n: o.seconds for n, o in outputs.items()},
        "pairs": {},
        "layers": table,
    }
    failed = False
    print()
    for a, b in pairs(names):
        m = compare(outputs[a], outputs[b])
        entry = m.to_dict()
        entry["saturations"] = {
            a: sum(outputs[a].saturations.values()),
            b: sum(outputs[b].saturations.values()),
        }
        # float vs fixed point has a budget; two fixed-point backends must be identical
        fixed = [n for n in (a, b) if n != "torch"]
        if len(fixed) == 2:
            entry["bit_exact"] = bool(np.array_equal(outputs[a].tokens, outputs[b].tokens))
            entry["first_difference"] = first_difference(outputs[a], outputs[b])
            missed = (
                []
                if entry["bit_exact"]
                else [f"not bit-exact (first difference at {entry['first_difference']})"]
            )
        else:
            missed = within_budget(m, profile.budgets)
        entry["within_budget"] = not missed
        failed |= bool(missed)
        result["pairs"][f"{a}-{b}"] = entry
        verdict = "PASS" if not missed else "FAIL: " + "; ".join(missed)
        print(
            f"{a} vs {b}: max_abs={m.max_abs:.3e} rel_rms={m.rel_rms:.3e} cosine={m.cosine:.7f} "
            f"routing={m.routing_agreement:.4f} ({m.routing_mismatches}/{m.routing_decisions} "
            f"differ) saturations={entry['saturations']}  {verdict}"
        )
    head = task_output_check(wl, images, task, outputs)
    result["task_output"] = head
    print(
        f"task output on the host ({head['norm']}, {head['head']}) vs torch forward: "
        + ", ".join(f"{n} max_abs={e:.3e}" for n, e in head["max_abs_vs_forward"].items())
    )
    if args.json:
        _write_json_atomic(Path(args.json), result)
        print(f"wrote {args.json}")
    if args.plot:
        _write_plot(Path(args.plot), table, f"{cfg.name} / {profile.name} / task {task}")
        print(f"wrote {args.plot}")
    return 1 if failed else 0


def _parse_tiling(text: str, p: int, flag: str = "--tiling") -> Tiling:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise EdgeMoeError(f"{flag} {text!r}: expected LIN_INxLIN_OUT, e.g. 32x32")
    t = Tiling(int(m.group(1)), int(m.group(2)), p)
    if max(t.lin_in, t.lin_out, t.p) > 255:
        # the header's tiling word keeps 8 bits per size
        raise EdgeMoeError(f"--tiling {text} --p {p}: the bundle header holds sizes up to 255")
    return t


def cmd_export(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    profile = load_profile(args.profile)
    tiling = _parse_tiling(args.tiling, args.p)
    out = Path(args.out)
    report_json = out.with_name(out.name + ".report.json")
    report_txt = out.with_name(out.name + ".report.txt")
    for path in (out, report_json, report_txt):
        if path.is_dir():
            raise EdgeMoeError(f"cannot write {path}: is a directory")

    model, notices = _build_model(cfg, args.seed, args.checkpoint)
    for n in notices:
        print(f"notice: {n}", file=sys.stderr)
    qm = quantize_model(model.state_dict(), cfg, profile)
    data = pack(qm, tiling)
    header = validate(data, cfg, profile, tiling)
    report = qm.report
    source = (
        f"checkpoint {args.checkpoint}" if args.checkpoint else f"random init, seed {args.seed}"
    )
    meta = {
        "config": cfg.name,
        "profile": profile.name,
        "profile_id": profile.id,
        "config_hash": f"0x{config_hash(cfg, profile):08x}",
        "tiling": {
            "lin_in": tiling.lin_in,
            "lin_out": tiling.lin_out,
            "p": tiling.p,
            "axi_bits": tiling.axi_bits,
        },
        "checkpoint": args.checkpoint,
        "seed": args.seed,
        "bundle": str(out),
        "bundle_bytes": len(data),
        "payload_crc32": f"0x{header.payload_crc:08x}",
        "bundle_tensors": len(layout(cfg, profile, tiling)),
    }
    text = (
        f"# {cfg.name} / {profile.name} / tiling {tiling.key} / {source}\n"
        f"# bundle {out.name}: {len(data)} bytes, config hash {meta['config_hash']}, "
        f"{report.saturated} saturated value(s)\n" + report.table() + "\n"
    )

    report_text = json.dumps({**meta, **report.to_dict()}, indent=2) + "\n"
    written: list[Path] = []
    try:
        # three atomic writes; if a later one fails, the earlier ones go too
        write_bundle(out, data)
        written.append(out)
        write_atomic(report_json, report_text.encode())
        written.append(report_json)
        write_atomic(report_txt, text.encode())
        written.append(report_txt)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise

    print(f"{cfg.name} / {profile.name} / tiling {tiling.key} / {source}")
    print(
        f"wrote {out}: {len(data):,} bytes, {meta['bundle_tensors']} tensors, "
        f"config hash {meta['config_hash']}, CRC32 {meta['payload_crc32']}"
    )
    sat = report.saturated_tensors()
    if sat:
        names = ", ".join(f"{t.name} ({t.saturated})" for t in sat)
        print(f"saturated: {report.saturated} value(s) in {len(sat)} tensor(s): {names}")
    else:
        print("saturated: none")
    print(f"report: {report_json}, {report_txt}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from .perf import BOARDS, batch_curve, estimate, our_design, plot, published_design, table

    cfg = load_config(args.config)
    profile = load_profile(args.profile)
    if args.board not in BOARDS:
        raise EdgeMoeError(f"unknown board {args.board!r} (known: {', '.join(BOARDS)})")
    if not 50 <= args.clock_mhz <= 600:
        raise EdgeMoeError("--clock-mhz must be in 50..600")
    if args.design == "edge-moe-published":
        design = published_design()
    else:
        d = DEFAULT_TILING
        tiles = args.tiles or f"{d.lin_in}x{d.lin_out}"
        if not 1 <= args.weight_ports <= 4:
            raise EdgeMoeError("--weight-ports must be in 1..4 (the ZCU104's HP ports)")
        tiling = _parse_tiling(tiles, args.p or d.p, "--tiles")
        design = our_design(profile, tiling, args.weight_ports)
    batched = design.expert_major
    if args.batch is None:  # edgemoe: one expert-major group; Edge-MoE: one image
        args.batch = MAX_BATCH if batched else 1
    check_batch(args.batch)
    if args.batch > 1 and not batched:
        raise EdgeMoeError("--batch: the published design has no expert-major batched mode")
    board = BOARDS[args.board]
    est = estimate(cfg, profile, design, board, args.clock_mhz, batch=args.batch)
    print(table(est))
    curve = batch_curve(cfg, profile, design, board, args.clock_mhz) if batched else None
    if curve:
        per = ", ".join(
            f"{c['batch']} -> {c['ms_per_image']:.2f} ({c['call_ms']:.1f})" for c in curve
        )
        print(f"images per call -> ESTIMATED ms per image (call ms): {per}")
    if args.json:
        extra = {"batch_curve": curve}
        if curve:
            extra["one_image_per_call_ms"] = curve[0]["call_ms"]
        _write_json_atomic(Path(args.json), {**est.to_dict(), **extra})
        print(f"wrote {args.json}")
    if args.plot:
        plot(est, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _task_arg(task: str | None, cfg) -> str | int:
    if task is None:
        return 0
    return int(task) if task.isdigit() else task


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edgemoe",
        description="M3ViT on the Edge-MoE FPGA accelerator: export, run, verify.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="compare backends on a seeded model and images")
    v.add_argument("--config", default=DEFAULT_CONFIG, help="config name or YAML path")
    v.add_argument("--profile", default=DEFAULT_PROFILE, help="precision profile name or path")
    v.add_argument("--task", default=None, help="task name or id (default: the first task)")
    v.add_argument("--seed", type=int, default=0, help="seed of the random model and images")
    v.add_argument("--images", type=int, default=1, help="number of seeded images")
    v.add_argument("--backends", default="torch,golden", help="comma-separated backend names")
    v.add_argument("--checkpoint", default=None, help="M3ViT checkpoint instead of random init")
    v.add_argument(
        "--top-k", type=int, default=None, help="experts per token (default: the config's)"
    )
    v.add_argument("--json", default=None, help="write the metrics as JSON here")
    v.add_argument("--plot", default=None, help="write the per-layer error plot (PNG) here")
    v.set_defaults(func=cmd_verify)

    e = sub.add_parser("export", help="quantize a model and write its weight bundle + report")
    e.add_argument("--config", required=True, help="config name or YAML path")
    e.add_argument("--profile", required=True, help="precision profile name or path")
    e.add_argument("--checkpoint", default=None, help="M3ViT checkpoint instead of random init")
    e.add_argument("--seed", type=int, default=0, help="seed of the random init")
    e.add_argument("--out", required=True, help="bundle file to write")
    e.add_argument(
        "--tiling",
        default=f"{DEFAULT_TILING.lin_in}x{DEFAULT_TILING.lin_out}",
        help="linear-unit tile LIN_INxLIN_OUT (default: the committed kernel build)",
    )
    e.add_argument(
        "--p", type=int, default=DEFAULT_TILING.p, help="attention query rows per key sweep"
    )
    e.set_defaults(func=cmd_export)

    add_run_parser(sub, DEFAULT_CONFIG, DEFAULT_PROFILE)
    es = sub.add_parser("estimate", help="cycle, DDR and resource ESTIMATE of a design")
    es.add_argument("--config", default=DEFAULT_CONFIG)
    es.add_argument("--profile", default=DEFAULT_PROFILE)
    es.add_argument("--board", default="zcu104", help="zcu104 or zcu102")
    es.add_argument("--clock-mhz", type=float, default=300.0)
    es.add_argument("--tiles", default=None, help="LIN_INxLIN_OUT, e.g. 32x32")
    es.add_argument("--p", type=int, default=None, help="attention query rows P")
    es.add_argument("--design", choices=["edgemoe", "edge-moe-published"], default="edgemoe")
    es.add_argument(
        "--batch",
        type=int,
        default=None,
        help="images per call (more than 1: expert-major); default: one group of "
        f"{MAX_BATCH} for edgemoe, 1 for the published design. latency_ms is per image: "
        "call_ms / batch",
    )
    es.add_argument(
        "--weight-ports",
        type=int,
        default=1,
        help="what-if: weights striped over this many HP ports (the kernel as built: 1)",
    )
    es.add_argument("--json", default=None)
    es.add_argument("--plot", default=None, help="stacked bar chart per layer (PNG)")
    es.set_defaults(func=cmd_estimate)

    b = sub.add_parser("bench", help="time every backend on this machine in one run")
    b.add_argument("--config", default=DEFAULT_CONFIG, help="config name or YAML path")
    b.add_argument("--profile", default=DEFAULT_PROFILE, help="precision profile name or path")
    b.add_argument("--task", default=None, help="task name or id (default: the first task)")
    b.add_argument("--seed", type=int, default=0, help="seed of the random model and image")
    b.add_argument("--runs", type=int, default=MIN_RUNS, help=f"timed runs, >= {MIN_RUNS}")
    b.add_argument("--backends", default=",".join(DEFAULT_BACKENDS), help="comma-separated")
    b.add_argument("--json", default=None, help="write the results as JSON here")
    b.set_defaults(func=cmd_bench)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgeMoeError as e:
        print(f"edgemoe: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgemoe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
