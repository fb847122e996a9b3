"""``edgemoe estimate``: cycles, DDR bytes, latency and resources of a design (ESTIMATES)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.errors import EdgeMoeError
from edgemoe.files import write_file_atomic, write_json_atomic
from edgemoe.host.app.args import HelpFormatter, add_options, clock_arg, int_range, parse_tiling
from edgemoe.host.app.outputs import check_output_file
from edgemoe.host.app.run import check_batch
from edgemoe.host.contracts.profile import DEFAULT_PROFILE, load_profile
from edgemoe.host.contracts.scratch import MAX_GROUP
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.models.config import load_config

#: The profile of Edge-MoE's published widths (``estimate --design edge-moe-published``).
PUBLISHED_PROFILE = "edge-moe"


def cmd_estimate(args: argparse.Namespace) -> int:
    from edgemoe.host.estimate.perf import (
        DEVICES,
        batch_curve,
        decoder_table,
        end_to_end,
        estimate,
        our_design,
        plot,
        published_design,
        table,
    )

    cfg = load_config(args.config)
    if args.task is not None:
        from edgemoe.host.estimate.decoder import pup_task

        pup_task(cfg, args.task)  # a task without a pup head before any work
    if args.schedule is not None:
        from edgemoe.host.app.video import parse_schedule

        parse_schedule(args.schedule, cfg)  # a bad one before any work
    if args.board not in DEVICES:
        raise EdgeMoeError(f"unknown board {args.board!r} (known: {', '.join(DEVICES)})")
    check_output_file(args.json, "--json")
    check_output_file(args.plot, "--plot", ".png")
    if args.design == "edge-moe-published":
        given = [
            f for f, v in (("--tiling", args.tiling), ("--p", args.p), ("--weight-ports",
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
        tiling = parse_tiling(args.tiling or f"{d.lin_in}x{d.lin_out}", args.p or d.p)
        design = our_design(profile, tiling, args.weight_ports or 1)
    batched = design.expert_major
    if args.batch is None:  # edgemoe: one expert-major group; Edge-MoE: one image
        args.batch = MAX_GROUP if batched else 1
    check_batch(args.batch)
    if args.batch > 1 and not batched:
        raise EdgeMoeError("--batch: the published design has no expert-major batched mode")
    device = DEVICES[args.board]
    rom = args.gelu_rom
    est = estimate(cfg, profile, design, device, args.clock_mhz, batch=args.batch, gelu_rom=rom)
    print(table(est))
    curve = (
        batch_curve(cfg, profile, design, device, args.clock_mhz, gelu_rom=rom) if batched else None
    )
    if curve:
        per = ", ".join(
            f"{c['batch']} -> {c['ms_per_image']:.2f} ({c['call_ms']:.1f})" for c in curve
        )
        print(f"images per call -> ESTIMATED ms per image (call ms): {per}")
    # the clock the utilisation makes plausible after place and route, and the latencies
    # there: this call's and one image per call's
    slow = min(args.clock_mhz, est.resources["plausible_clock_mhz"])
    at = estimate(cfg, profile, design, device, slow, batch=args.batch, gelu_rom=rom)
    one = estimate(cfg, profile, design, device, slow, batch=1, gelu_rom=rom)
    clock = {
        "target_mhz": args.clock_mhz,
        "plausible_mhz": slow,
        "rule": est.resources["clock_rule"],
        "latency_ms": at.latency_ms,
        "call_ms": at.call_ms,
        "one_image_per_call_ms": one.call_ms,
    }
    print(
        f"clock: {args.clock_mhz:g} MHz targeted, {slow:g} MHz plausible at this utilisation "
        f"(worst of LUT, DSP, BRAM36: <= 70 % 300, > 70 % 250, > 85 % 200 MHz; judgement); "
        f"at {slow:g} MHz: {at.latency_ms:.2f} ms per image ({at.call_ms:.1f} per call), "
        f"one image per call {one.call_ms:.2f} ms"
    )
    e2e = end_to_end(cfg, profile, design, device, args.clock_mhz, args.task, gelu_rom=rom)
    dec_ms = dec_slow = 0.0  # the decoder per task-image, where the kernel decodes
    if e2e is not None:
        print(decoder_table(e2e))
        dec_ms = dec_slow = _decoder_ms(e2e, args.batch)
        if slow < args.clock_mhz:  # the end-to-end figures at the plausible clock too
            at_slow = end_to_end(cfg, profile, design, device, slow, args.task, gelu_rom=rom)
            dec_slow = _decoder_ms(at_slow, args.batch)
            clock["end_to_end_ms_per_task_image"] = at_slow["ms_per_task_image"]
            print(
                f"end to end at the plausible {slow:g} MHz: "
                + ", ".join(
                    f"{b} per call {ms:.2f} ms" for b, ms in at_slow["ms_per_task_image"].items()
                )
                + " per task-image"
            )
    frames = None
    if args.schedule is not None:
        frames = schedule_fps(
            args.schedule, cfg, args.batch, est.call_ms, at.call_ms, slow, dec_ms, dec_slow
        )
        print(frames["summary"])
    if args.json:
        extra = {"batch_curve": curve, "clock": clock}
        if frames is not None:
            extra["schedule"] = frames
        if curve:
            extra["one_image_per_call_ms"] = curve[0]["call_ms"]
        if e2e is not None:
            extra["decoder"] = e2e
            extra["end_to_end_ms_per_task_image"] = e2e["ms_per_task_image"]
            extra["floor_ms_per_task_image"] = e2e["floor"]["ms_per_task_image"]
        write_json_atomic(Path(args.json), {**est.to_dict(), **extra})
        print(f"wrote {args.json}")
    if args.plot:
        write_file_atomic(Path(args.plot), lambda tmp: plot(est, str(tmp)), "--plot")
        print(f"wrote {args.plot}")
    return 0


def _decoder_ms(e2e: dict, batch: int) -> float:
    """The decoder's ms per task-image of an end-to-end estimate at ``batch`` images per
    call (the nearest batch it has: the decoder streams its weights per band, so the
    batch barely changes it)."""
    per = e2e["per_call"]
    key = min(per, key=lambda b: abs(int(b) - batch))
    return per[key]["decoder_ms"]


def schedule_fps(
    text: str,
    cfg,
    batch: int,
    call_ms: float,
    plausible_call_ms: float,
    plausible_mhz: float,
    decoder_ms: float = 0.0,
    plausible_decoder_ms: float = 0.0,
) -> dict:
    """Frames per second of a ``--schedule`` (as ``run --video`` runs it) from the kernel's
    call time: frames of one task are batched ``batch`` to a call, a frame costs one
    backbone pass per task it runs, and for a task whose head the kernel decodes
    (``HeadSpec.on_datapath``) its decoder, ``decoder_ms`` per task-image. The host's
    part (the resizes, a light head) overlaps the kernel and is not counted."""
    from edgemoe.host.app.video import parse_schedule

    sched = parse_schedule(text, cfg)
    tasks = sched.tasks(0)
    passes = len(tasks)  # backbone passes per frame (both: every task)
    decoded = sum(cfg.task_spec(t).head.on_datapath for t in sched.cycle) / len(sched.cycle)
    decoded *= passes  # decoder runs per frame, over the schedule's cycle
    fps = 1e3 / (call_ms * passes / batch + decoded * decoder_ms)
    slow = 1e3 / (plausible_call_ms * passes / batch + decoded * plausible_decoder_ms)
    which = " and ".join(sched.cycle)
    summary = (
        f"schedule {sched.name}: ESTIMATED {fps:.1f} frames/s ({slow:.1f} at the plausible "
        f"{plausible_mhz:g} MHz), {batch} frame(s) of one task per call, {passes} backbone "
        f"pass(es) per frame on the FPGA"
        + (
            f" and {decoded:g} decoder run(s) of {decoder_ms:.2f} ms (the {which} tasks' heads "
            "the kernel decodes)"
            if decoded
            else ""
        )
        + "; the host's part of the heads (resizes, a light head) overlaps the kernel and is "
        "not counted (where it takes longer per frame than the kernel, the host bounds the rate)"
    )
    return {
        "schedule": sched.name,
        "batch": batch,
        "backbone_passes_per_frame": passes,
        "fps": fps,
        "fps_plausible_clock": slow,
        "decoder_ms_per_task_image": decoder_ms,
        "counts": "backbone and the decoders the kernel runs, on the FPGA; the host's part of "
        "the heads overlapped, not counted",
        "summary": summary,
    }


def add_parser(sub) -> None:
    """The ``estimate`` subcommand."""
    es = sub.add_parser(
        "estimate",
        help="cycle, DDR and resource ESTIMATE of a design",
        description="Cycles, DDR bytes, latency and resources of a design, from the kernel's "
        "loop trip counts (an ESTIMATE: nothing has been synthesised).",
        formatter_class=HelpFormatter,
    )
    add_options(
        es,
        "config",
        "profile",
        profile={
            "default": None,
            "help": f"precision profile (default: {DEFAULT_PROFILE}; {PUBLISHED_PROFILE} for "
            "--design edge-moe-published)",
        },
    )
    es.add_argument("--board", default="zcu104", help="zcu104 or zcu102")
    es.add_argument("--clock-mhz", type=clock_arg, default=300.0, help="PL clock in MHz, 50..600")
    add_options(
        es,
        "tiling",
        "p",
        tiling={
            "default": None,
            "help": f"linear-unit tile LIN_INxLIN_OUT, e.g. 32x32 (default: "
            f"{DEFAULT_TILING.lin_in}x{DEFAULT_TILING.lin_out}; edgemoe design only)",
        },
        p={
            "default": None,
            "help": f"attention query rows P (default: {DEFAULT_TILING.p}; edgemoe design only)",
        },
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
        f"{MAX_GROUP} for edgemoe, 1 for the published design. latency_ms is per image: "
        "call_ms / batch",
    )
    es.add_argument(
        "--weight-ports",
        type=int_range(1, 4),
        default=None,
        help="what-if: weights striped over this many HP ports, 1..4 (default: 1, the "
        "kernel as built; edgemoe design only)",
    )
    es.add_argument(
        "--gelu-rom",
        choices=["bram", "lutrom"],
        default="bram",
        help="storage of the epilogue lanes' GELU tables in the resource model: one "
        "dual-port BRAM ROM per lane, or LUT-ROM halves (even / odd entries) per lane",
    )
    es.add_argument(
        "--schedule",
        default=None,
        help="also the frames per second of a run --video schedule (a task, alternate, "
        "every:N, both), --batch frames of one task per call; the backbone only (the heads "
        "run on the host)",
    )
    es.add_argument(
        "--task",
        default=None,
        help="the task whose pup decoder the end-to-end figures count (default: the "
        "config's first task with a pup head)",
    )
    es.add_argument("--json", default=None, help="write the estimate as JSON here")
    es.add_argument("--plot", default=None, help="stacked bar chart per layer (PNG)")
    es.set_defaults(func=cmd_estimate)
