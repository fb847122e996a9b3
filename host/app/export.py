"""``edgemoe export``: a float model -> calibration -> its bundle file and report.

Nothing is written before calibration has passed; the bundle and its two reports
are written atomically, and if a later one fails the earlier ones are removed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from edgemoe.errors import EdgeMoeError
from edgemoe.files import write_bytes_atomic
from edgemoe.host.app.args import HelpFormatter, add_options, parse_tiling
from edgemoe.host.app.inputs import load_image_folder
from edgemoe.host.app.outputs import check_output_file
from edgemoe.host.contracts.images import scene_images
from edgemoe.host.contracts.profile import config_hash, load_profile
from edgemoe.host.export.bundle import layout, split_file, validate, write_bundle
from edgemoe.host.export.calibrate import (
    DEFAULT_CALIB_IMAGES,
    WARN_BITS,
    Calibration,
    CalibrationError,
    calibrate,
)
from edgemoe.host.export.quantize import QuantReport
from edgemoe.models.config import load_config
from edgemoe.pipeline import check_heads, export_bundle, float_workload, weight_source


def cmd_export(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    profile = load_profile(args.profile)
    tiling = parse_tiling(args.tiling, args.p)
    out, report_json, report_txt = _output_paths(args.out)
    notices: list[str] = []
    source = weight_source(cfg, args.checkpoint, args.seed, args.random, notices=notices)

    wl, loaded = float_workload(cfg, profile, source)
    # a head the checkpoint lacks is exported as it is and recorded in the bundle: run and
    # eval refuse its task without --untrained-heads
    source = check_heads(source, wl, (), True)
    if source.untrained_heads:
        loaded.append(
            f"the bundle records the head of task(s) {', '.join(source.untrained_heads)} as "
            "untrained: run refuses them without --untrained-heads"
        )
    for n in notices + loaded:
        print(f"notice: {n}", file=sys.stderr)
    report = wl.quantized.report
    cal = _calibrate_export(args, wl.model, cfg, profile, report)
    data = export_bundle(wl, tiling, source)
    kernel_image, _ = split_file(data)
    header = validate(kernel_image, cfg, profile, tiling)
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
        "checkpoint": source.checkpoint,
        "checkpoint_sha256": source.checkpoint_sha256,
        "seed": args.seed,
        "weights": source.describe(),
        "trained_on": source.trained_on,
        "bundle": str(out),
        "bundle_bytes": len(data),
        "kernel_image_bytes": len(kernel_image),
        "payload_crc32": f"0x{header.payload_crc:08x}",
        "bundle_tensors": len(layout(cfg, profile, tiling)),
    }
    title = f"{cfg.name} / {profile.name} / tiling {tiling.key} / {source.describe()}"
    text = _report_text(title, out.name, len(data), meta["config_hash"], report, cal)
    report_text = (
        json.dumps({**meta, **report.to_dict(), "calibration": cal.to_dict()}, indent=2) + "\n"
    )
    _write_all(
        (out, lambda: write_bundle(out, data)),
        (report_json, lambda: write_bytes_atomic(report_json, report_text.encode())),
        (report_txt, lambda: write_bytes_atomic(report_txt, text.encode())),
    )
    print(title)
    if args.checkpoint is None and source.checkpoint is not None:
        print(
            f"weights: the config's shipped checkpoint {Path(source.checkpoint).name} "
            "(the default; --checkpoint PATH for others, --random for the seeded random model)"
        )
    print(
        f"wrote {out}: {len(data):,} bytes ({len(kernel_image):,} for the kernel, the rest "
        f"the host's heads and description), {meta['bundle_tensors']} tensors, "
        f"config hash {meta['config_hash']}, CRC32 {meta['payload_crc32']}"
    )
    _print_findings(report, cal)
    print(f"report: {report_json}, {report_txt}")
    return 0


def _output_paths(text: str) -> tuple[Path, Path, Path]:
    """The bundle ``--out`` names and its two reports beside it, checked writable."""
    if not text.strip():
        raise EdgeMoeError("--out '': an empty path names no file")
    out = Path(text)
    report_json = out.with_name(out.name + ".report.json")
    report_txt = out.with_name(out.name + ".report.txt")
    for path in (out, report_json, report_txt):
        if path.is_dir():
            raise EdgeMoeError(f"cannot write {path}: is a directory")
    check_output_file(str(out), "--out")
    return out, report_json, report_txt


def _report_text(
    title: str, name: str, nbytes: int, hash_text: str, report: QuantReport, cal: Calibration
) -> str:
    """The readable report: the quantization table, then calibration per class and quantity."""
    return (
        f"# {title}\n"
        f"# bundle {name}: {nbytes} bytes, config hash {hash_text}, "
        f"{report.saturated} saturated value(s)\n" + report.table() + "\n"
        f"\n# calibration: {cal.images} image(s), {cal.source}; headroom in bits, per class\n"
        + cal.table()
        + "\n\n# per quantity\n"
        + cal.table(per_layer=True)
        + "\n"
    )


def _write_all(*writes: tuple[Path, Callable[[], None]]) -> None:
    """Each (path, atomic write of it) in turn; if a later one fails, the earlier files go."""
    written: list[Path] = []
    try:
        for path, write in writes:
            write()
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _print_findings(report: QuantReport, cal: Calibration) -> None:
    """The saturated tensors (or none) and the quantity with the least headroom."""
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


def add_parser(sub) -> None:
    """The ``export`` subcommand."""
    e = sub.add_parser(
        "export",
        help="quantize a model and write its weight bundle + report",
        description="Quantize a float model and write its bundle: the kernel's weights plus "
        "what the host needs to run it (config, profile, tiling, weights digest, task heads), "
        "and a quantization report beside it.",
        formatter_class=HelpFormatter,
    )
    add_options(
        e,
        "config",
        "profile",
        "checkpoint",
        "seed",
        checkpoint={
            "help": "M3ViT checkpoint (default: the config's shipped trained checkpoint); a "
            "task head it lacks is exported untrained and the bundle records it (run refuses "
            "that task without --untrained-heads)"
        },
        seed={"help": "seed of the random model (--random) and of the calibration scenes"},
    )
    add_options(
        e,
        "random",
        random={"help": "export the seeded random model instead of the shipped trained weights"},
    )
    e.add_argument("--out", default="build/bundle.bin", help="bundle file to write")
    add_options(e, "tiling", "p")
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
