"""The ``edgemoe`` command line.

Every error caused by bad input is one line on stderr and exit code 2; a
failed verification (budgets missed) exits 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.models.config import DEFAULT_CONFIG, load_config

from .backends import Workload, get_backend
from .bench import DEFAULT_BACKENDS, MIN_RUNS, cmd_bench
from .bundle import layout, pack, validate, write_atomic, write_bundle
from .calibrate import (
    DEFAULT_CALIB_IMAGES,
    WARN_BITS,
    Calibration,
    CalibrationError,
    calibrate,
    load_image_folder,
)
from .deployment import WeightSource, bundle_file, checkpoint_digest, host_tensors
from .evaluate import add_parser as add_eval_parser
from .images import random_images, scene_images
from .outputs import check_output_file, write_file_atomic
from .profile import DEFAULT_PROFILE, config_hash, load_profile
from .quantize import quantize_model
from .run import add_parser as add_run_parser
from .run import check_batch
from .scratch import MAX_BATCH
from .tiling import DEFAULT_TILING, Tiling
from .train_cli import add_parser as add_train_parser
from .verify import (
    compare,
    first_difference,
    layer_table,
    pairs,
    task_output_check,
    with_top_k,
    within_budget,
)

#: Seeds numpy and torch both take.
MAX_SEED = 2**32 - 1
#: Seeded images ``verify`` records every layer boundary of (each backend keeps them all).
MAX_VERIFY_IMAGES = 16
#: Longest ``--timeout`` (a day).
MAX_TIMEOUT_S = 86400.0


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, unless it has none or its help names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit code 2, like every other bad input."""

    def error(self, message: str):  # noqa: D401 - argparse's API
        # "argument --batch: must be in 1..1024" reads as "--batch must be in 1..1024"
        message = re.sub(r"^argument (\S+): must be ", r"\1 must be ", message)
        self.exit(2, f"edgemoe: error: {message} (see {self.prog} --help)\n")


def int_range(lo: int, hi: int):
    """An argparse type: an integer in ``lo..hi``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}, got {v}")
        return v

    parse.__name__ = f"integer {lo}..{hi}"
    return parse


def seed_arg(text: str) -> int:
    """An argparse type: a seed, an integer in 0..2**32 - 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a seed (an integer in 0..{MAX_SEED})"
        ) from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {v} outside 0..{MAX_SEED}")
    return v


def timeout_arg(text: str) -> float:
    """An argparse type: seconds, positive and finite, at most a day."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < v <= MAX_TIMEOUT_S:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be in (0, {MAX_TIMEOUT_S:g}] seconds, got {text}")
    return v


def clock_arg(text: str) -> float:
    """An argparse type: a PL clock in MHz, 50..600."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a frequency in MHz") from None
    if not 50 <= v <= 600:
        raise argparse.ArgumentTypeError(f"must be in 50..600 MHz, got {text}")
    return v


def _write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` through a temporary file: never a partial file."""
    text = json.dumps(data, indent=2) + "\n"
    write_file_atomic(Path(path), lambda tmp: tmp.write_text(text))


def _write_plot(path: Path, table: list[dict], title: str) -> None:
    """The per-layer error plot, written atomically."""
    from .plots import layer_error_plot

    write_file_atomic(Path(path), lambda tmp: layer_error_plot(table, tmp, title))


def _need_torch() -> None:
    """A one-line error where the float model is needed and PyTorch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise EdgeMoeError(
            "this needs the float model and PyTorch is not installed: pip install "
            "'edgemoe[full]' (on a board, run a bundle: edgemoe run --bundle FILE)"
        ) from None


def _build_model(cfg, seed: int, checkpoint: str | None):
    """The float model: a checkpoint loaded into it, else a seeded random init.

    Returns
    -------
    tuple[M3ViT, list[str]]
        The model in eval mode and the checkpoint loader's one-line notices.
    """
    _need_torch()
    from edgemoe.models.checkpoint import load_checkpoint
    from edgemoe.models.m3vit import M3ViT, random_model

    if checkpoint is None:
        return random_model(cfg, seed), []
    model = M3ViT(cfg, seed=seed)
    # the project's own weight files (edgemoe train) carry the light heads: require them
    own = str(checkpoint).endswith(".safetensors")
    notices = load_checkpoint(model, checkpoint, strict_heads=own)
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
    check_output_file(args.json, "--json")
    check_output_file(args.plot, "--plot", ".png")
    model, notices = _build_model(cfg, args.seed, args.checkpoint)
    for n in notices:
        print(f"notice: {n}", file=sys.stderr)
    wl = Workload(cfg, profile, model)
    images, kind = verify_images(cfg, args)
    outputs = {b.name: b.run(wl, images, task, record=True) for b in backends}

    table = layer_table(outputs)
    cols = [k for k in table[0] if k != "stage"] if table else []
    print(
        f"{cfg.name} / {profile.name} / task {task} / top_k {cfg.top_k} / seed {args.seed} / "
        f"{len(images)} image(s): {kind}"
    )
    width = max([18, *(len(c) + 2 for c in cols)])
    print(
        f"{'boundary':<16}"
        + "".join(f"{c:>{width}}" for c in cols)
        + "   (rel_rms; route: agreement)"
    )
    for row in table:
        print(
            f"{row['stage']:<16}" + "".join(f"{row.get(c, float('nan')):>{width}.3e}" for c in cols)
        )

    result = {
        "config": cfg.name,
        "profile": profile.name,
        "task": task,
        "top_k": cfg.top_k,
        "seed": args.seed,
        "images": len(images),
        "image_kind": kind,
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
            missed = within_budget(m, profile.budgets_for(args.checkpoint is not None))
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


def verify_images(cfg, args: argparse.Namespace) -> tuple[np.ndarray, str]:
    """The images verify runs: a folder, seeded noise on request, else procedural scenes."""
    if args.images_from is not None:
        return load_image_folder(args.images_from, cfg), f"folder {args.images_from}"
    if args.noise_images:
        return random_images(cfg, args.images, args.seed), "seeded noise"
    return scene_images(cfg, args.images, args.seed), "procedural scenes"


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
    if not args.out.strip():
        raise EdgeMoeError("--out '': an empty path names no file")
    out = Path(args.out)
    report_json = out.with_name(out.name + ".report.json")
    report_txt = out.with_name(out.name + ".report.txt")
    for path in (out, report_json, report_txt):
        if path.is_dir():
            raise EdgeMoeError(f"cannot write {path}: is a directory")
    check_output_file(str(out), "--out")
    digest = checkpoint_digest(args.checkpoint) if args.checkpoint else None

    model, notices = _build_model(cfg, args.seed, args.checkpoint)
    for n in notices:
        print(f"notice: {n}", file=sys.stderr)
    state = Workload(cfg, profile, model).state
    qm = quantize_model(state, cfg, profile)
    report = qm.report
    cal = _calibrate_export(args, model, cfg, profile, report)
    kernel_image = pack(qm, tiling)
    header = validate(kernel_image, cfg, profile, tiling)
    source = WeightSource(args.checkpoint, digest, args.seed)
    data = bundle_file(kernel_image, cfg, profile, tiling, source, host_tensors(state, cfg))
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
        "checkpoint_sha256": digest,
        "seed": args.seed,
        "bundle": str(out),
        "bundle_bytes": len(data),
        "kernel_image_bytes": len(kernel_image),
        "payload_crc32": f"0x{header.payload_crc:08x}",
        "bundle_tensors": len(layout(cfg, profile, tiling)),
    }
    text = (
        f"# {cfg.name} / {profile.name} / tiling {tiling.key} / {source.describe()}\n"
        f"# bundle {out.name}: {len(data)} bytes, config hash {meta['config_hash']}, "
        f"{report.saturated} saturated value(s)\n" + report.table() + "\n"
        f"\n# calibration: {cal.images} image(s), {cal.source}; headroom in bits, per class\n"
        + cal.table()
        + "\n\n# per quantity\n"
        + cal.table(per_layer=True)
        + "\n"
    )

    report_text = (
        json.dumps({**meta, **report.to_dict(), "calibration": cal.to_dict()}, indent=2) + "\n"
    )
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

    print(f"{cfg.name} / {profile.name} / tiling {tiling.key} / {source.describe()}")
    print(
        f"wrote {out}: {len(data):,} bytes ({len(kernel_image):,} for the kernel, the rest "
        f"the host's heads and description), {meta['bundle_tensors']} tensors, "
        f"config hash {meta['config_hash']}, CRC32 {meta['payload_crc32']}"
    )
    sat = report.saturated_tensors()
    if sat:
        names = ", ".join(f"{t.name} ({t.saturated})" for t in sat)
        print(f"saturated: {report.saturated} value(s) in {len(sat)} tensor(s): {names}")
    else:
        print("saturated: none")
    tight = min(cal.quantities, key=lambda q: q.headroom_bits)
    print(
        f"calibration: {cal.images} image(s) ({cal.source}), least headroom "
        f"{tight.headroom_bits:.2f} bits at {tight.name} ({tight.fmt})"
    )
    print(f"report: {report_json}, {report_txt}")
    return 0


def _calibrate_export(args, model, cfg, profile, report) -> Calibration:
    """Calibrate before anything is written: refuse (or, if allowed, warn on) saturation."""
    if args.calib_images is not None:
        images, source = load_image_folder(args.calib_images, cfg), f"folder {args.calib_images}"
    else:
        images = scene_images(cfg, DEFAULT_CALIB_IMAGES, args.seed)
        source = f"procedural scenes, seed {args.seed}"
    cal = calibrate(model, cfg, profile, images, report, source)
    sat = sorted(cal.saturating(), key=lambda q: q.headroom_bits)
    if sat and not args.allow_saturation:
        q = sat[0]
        raise CalibrationError(
            f"{q.name} would saturate {q.fmt} ({q.cls}): max |x| {q.max_abs:.4g}, headroom "
            f"{q.headroom_bits:.2f} bits ({len(sat)} saturating quantit"
            f"{'y' if len(sat) == 1 else 'ies'}; --allow-saturation to export anyway)"
        )
    if sat:
        n = sum(q.saturated for q in sat)
        names = ", ".join(f"{q.name} ({q.saturated})" for q in sat[:5])
        print(f"warning: {len(sat)} quantities saturate ({n} value(s)): {names}", file=sys.stderr)
    for q in cal.low(WARN_BITS):
        print(
            f"warning: {q.name} has {q.headroom_bits:.2f} bits of headroom in {q.fmt} "
            f"(< {WARN_BITS:g}): max |x| {q.max_abs:.4g}",
            file=sys.stderr,
        )
    return cal


def cmd_estimate(args: argparse.Namespace) -> int:
    from .perf import BOARDS, batch_curve, estimate, our_design, plot, published_design, table

    cfg = load_config(args.config)
    if args.board not in BOARDS:
        raise EdgeMoeError(f"unknown board {args.board!r} (known: {', '.join(BOARDS)})")
    check_output_file(args.json, "--json")
    check_output_file(args.plot, "--plot", ".png")
    if args.design == "edge-moe-published":
        given = [
            f for f, v in (("--tiles", args.tiles), ("--p", args.p), ("--weight-ports",
            args.weight_ports)) if v is not None
        ]  # fmt: skip
        if given:
            raise EdgeMoeError(
                f"{given[0]} does not apply to --design edge-moe-published (its tiles, P and "
                "weight port are the published ones)"
            )
        profile = load_profile(args.profile or PUBLISHED_PROFILE)
        if profile.name != PUBLISHED_PROFILE:
            raise EdgeMoeError(
                f"--profile {args.profile}: --design edge-moe-published has the published "
                f"widths, profile {PUBLISHED_PROFILE}"
            )
        design = published_design()
    else:
        profile = load_profile(args.profile or DEFAULT_PROFILE)
        d = DEFAULT_TILING
        tiles = args.tiles or f"{d.lin_in}x{d.lin_out}"
        tiling = _parse_tiling(tiles, args.p or d.p, "--tiles")
        design = our_design(profile, tiling, args.weight_ports or 1)
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
        write_file_atomic(Path(args.plot), lambda tmp: plot(est, str(tmp)), "--plot")
        print(f"wrote {args.plot}")
    return 0


#: The profile of Edge-MoE's published widths (``estimate --design edge-moe-published``).
PUBLISHED_PROFILE = "edge-moe"


def _task_arg(task: str | None, cfg) -> str | int:
    if task is None:
        return 0
    return int(task) if task.isdigit() else task


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(
        prog="edgemoe",
        description="M3ViT on the Edge-MoE FPGA accelerator: export, run, verify.",
        formatter_class=HelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "verify",
        help="compare backends on a seeded model and images",
        description="Compare every pair of backends on a seeded model and seeded images: "
        "the error at every layer boundary and on the final output, against the profile's "
        "budgets (exit 1 when one is missed).",
        formatter_class=HelpFormatter,
    )
    v.add_argument("--config", default=DEFAULT_CONFIG, help="config name or YAML path")
    v.add_argument("--profile", default=DEFAULT_PROFILE, help="precision profile name or path")
    v.add_argument("--task", default=None, help="task name or id (default: the first task)")
    v.add_argument("--seed", type=seed_arg, default=0, help="seed of the random model and images")
    v.add_argument(
        "--images",
        type=int_range(1, MAX_VERIFY_IMAGES),
        default=1,
        help=f"number of seeded images, 1..{MAX_VERIFY_IMAGES} (every boundary is kept)",
    )
    v.add_argument(
        "--images-from", default=None, help="run every image in this folder instead (resized)"
    )
    v.add_argument(
        "--noise-images",
        action="store_true",
        help="seeded noise images instead of procedural scenes (understates trained error)",
    )
    v.add_argument("--backends", default="torch,golden", help="comma-separated backend names")
    v.add_argument("--checkpoint", default=None, help="M3ViT checkpoint instead of random init")
    v.add_argument(
        "--top-k", type=int, default=None, help="experts per token (default: the config's)"
    )
    v.add_argument("--json", default=None, help="write the metrics as JSON here")
    v.add_argument(
        "--plot", default=None, help="write the per-layer error plot here (PNG, every pair)"
    )
    v.set_defaults(func=cmd_verify)

    e = sub.add_parser(
        "export",
        help="quantize a model and write its weight bundle + report",
        description="Quantize a float model and write its bundle: the kernel's weights plus "
        "what the host needs to run it (config, profile, tiling, weights digest, task heads), "
        "and a quantization report beside it.",
        formatter_class=HelpFormatter,
    )
    e.add_argument("--config", default=DEFAULT_CONFIG, help="config name or YAML path")
    e.add_argument("--profile", default=DEFAULT_PROFILE, help="precision profile name or path")
    e.add_argument("--checkpoint", default=None, help="M3ViT checkpoint instead of random init")
    e.add_argument("--seed", type=seed_arg, default=0, help="seed of the random init")
    e.add_argument("--out", default="build/bundle.bin", help="bundle file to write")
    e.add_argument(
        "--tiling",
        default=f"{DEFAULT_TILING.lin_in}x{DEFAULT_TILING.lin_out}",
        help="linear-unit tile LIN_INxLIN_OUT (the default is the committed kernel build)",
    )
    e.add_argument(
        "--p",
        type=int_range(1, 255),
        default=DEFAULT_TILING.p,
        help="attention query rows per key sweep",
    )
    e.add_argument(
        "--calib-images",
        default=None,
        help=f"calibrate on every image in this folder (default: {DEFAULT_CALIB_IMAGES} "
        "procedural scenes of --seed)",
    )
    e.add_argument(
        "--allow-saturation",
        action="store_true",
        help="export even when calibration finds a quantity that saturates (a warning)",
    )
    e.set_defaults(func=cmd_export)

    add_run_parser(sub, DEFAULT_CONFIG, DEFAULT_PROFILE)
    es = sub.add_parser(
        "estimate",
        help="cycle, DDR and resource ESTIMATE of a design",
        description="Cycles, DDR bytes, latency and resources of a design, from the kernel's "
        "loop trip counts (an ESTIMATE: nothing has been synthesised).",
        formatter_class=HelpFormatter,
    )
    es.add_argument("--config", default=DEFAULT_CONFIG, help="config name or YAML path")
    es.add_argument(
        "--profile",
        default=None,
        help=f"precision profile (default: {DEFAULT_PROFILE}; {PUBLISHED_PROFILE} for "
        "--design edge-moe-published)",
    )
    es.add_argument("--board", default="zcu104", help="zcu104 or zcu102")
    es.add_argument("--clock-mhz", type=clock_arg, default=300.0, help="PL clock in MHz, 50..600")
    es.add_argument(
        "--tiles",
        default=None,
        help=f"LIN_INxLIN_OUT, e.g. 32x32 (default: {DEFAULT_TILING.lin_in}x"
        f"{DEFAULT_TILING.lin_out}; edgemoe design only)",
    )
    es.add_argument(
        "--p",
        type=int_range(1, 255),
        default=None,
        help=f"attention query rows P (default: {DEFAULT_TILING.p}; edgemoe design only)",
    )
    es.add_argument(
        "--design",
        choices=["edgemoe", "edge-moe-published"],
        default="edgemoe",
        help="this project's kernel, or a model of Edge-MoE's published design",
    )
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
        type=int_range(1, 4),
        default=None,
        help="what-if: weights striped over this many HP ports, 1..4 (default: 1, the "
        "kernel as built; edgemoe design only)",
    )
    es.add_argument("--json", default=None, help="write the estimate as JSON here")
    es.add_argument("--plot", default=None, help="stacked bar chart per layer (PNG)")
    es.set_defaults(func=cmd_estimate)

    b = sub.add_parser(
        "bench",
        help="time every backend on this machine in one run",
        description="Milliseconds per image of every backend on this machine, in one run.",
        formatter_class=HelpFormatter,
    )
    b.add_argument("--config", default=DEFAULT_CONFIG, help="config name or YAML path")
    b.add_argument("--profile", default=DEFAULT_PROFILE, help="precision profile name or path")
    b.add_argument("--task", default=None, help="task name or id (default: the first task)")
    b.add_argument("--seed", type=seed_arg, default=0, help="seed of the random model and image")
    b.add_argument("--runs", type=int, default=MIN_RUNS, help=f"timed runs, >= {MIN_RUNS}")
    b.add_argument("--backends", default=",".join(DEFAULT_BACKENDS), help="comma-separated")
    b.add_argument("--json", default=None, help="write the results as JSON here")
    b.set_defaults(func=cmd_bench)

    add_train_parser(sub, DEFAULT_CONFIG)
    add_eval_parser(sub, DEFAULT_CONFIG)
    return ap


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, one line already printed)
        return e.code if isinstance(e.code, int) else 0
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
