"""``edgemoe run``: images -> backbone (any backend) -> light head -> PNGs and ``report.json``.

Everything that can be wrong with the input (image, task, bundle, ``--out``) is
checked before the first kernel call; outputs are written into a temporary
folder beside ``--out`` and moved into place only when every image succeeded,
so a failure never leaves a partial file in ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.files import write_json_atomic
from edgemoe.host.app.args import HelpFormatter, add_options, int_range, parse_tasks, timeout_arg
from edgemoe.host.app.fidelity import budget_misses, cosine, rel_rms, route_budgeted, routing
from edgemoe.host.app.inputs import FITS, InputImage, load_image
from edgemoe.host.app.outputs import check_out_dir, publish, staging_dir
from edgemoe.host.app.plots import blend, save_png, task_figure, task_rgb
from edgemoe.host.app.verify import with_top_k
from edgemoe.host.contracts.images import sample_scene
from edgemoe.host.contracts.profile import DEFAULT_PROFILE, Profile, load_profile
from edgemoe.host.contracts.scratch import MAX_GROUP
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.driver.backends import (
    Backend,
    TorchBackend,
    backend_capabilities,
    backend_names,
    backends_help,
    get_backend,
)
from edgemoe.host.export.deployment import Deployment, WeightSource
from edgemoe.host.export.hls_params import MAX_IMAGES
from edgemoe.models.config import DEFAULT_CONFIG, ModelConfig, load_config
from edgemoe.pipeline import (
    Engine,
    TaskCall,
    bundle_weights,
    check_bundle,
    check_heads,
    open_bundle,
    weight_source,
    workload,
)

#: ``--out``'s default (a folder; with ``--video``: video-out.mp4).
OUT_DEFAULT = "run-out"


def _unique_names(images: list[InputImage]) -> None:
    seen: dict[str, int] = {}
    for im in images:
        n = seen.get(im.name, 0)
        seen[im.name] = n + 1
        if n:
            im.name = f"{im.name}_{n}"


def _check_pair(
    ref: np.ndarray,
    out: np.ndarray,
    budgets: dict[str, float],
    routes: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
) -> dict:
    """One ``--check`` comparison under the fidelity rule (routing included, where given)."""
    rr, cs = rel_rms(ref, out), cosine(ref, out)
    agreement = None if routes is None else routing(*routes)[0]
    # rel_rms and cosine are budgeted over the tokens that route alike (a flipped
    # token is the routing budget's); reported over all tokens
    rb, cb = route_budgeted(ref, out, routes, (rr, cs))
    missed = budget_misses(budgets, rb, cb, agreement)
    entry = {"rel_rms": rr, "cosine": cs, "within_budget": not missed}
    if missed:
        entry["missed"] = missed
    return entry


def check_batch(n: int) -> None:
    """``--batch``: images per kernel call, as many as the kernel takes."""
    if not 1 <= n <= MAX_IMAGES:
        raise EdgeMoeError(f"--batch must be in 1..{MAX_IMAGES}")


def _build(args: argparse.Namespace) -> tuple:
    """(the bundle's deployment or None, config, profile, tiling) of this run: the bundle's
    (a flag must agree), else the flags' with the default tiling."""
    if args.bundle is not None:
        dep = open_bundle(
            args.bundle,
            config=args.config,
            profile=args.profile,
            top_k=args.top_k,
            host_check=False,  # after the other inputs are checked (or not: --no-host-check)
        )
        return dep, dep.cfg, dep.profile, dep.tiling
    cfg = with_top_k(load_config(args.config or DEFAULT_CONFIG), args.top_k)
    profile = load_profile(args.profile or DEFAULT_PROFILE)
    return None, cfg, profile, DEFAULT_TILING


def _input_images(args: argparse.Namespace, cfg: ModelConfig, seed: int) -> list[InputImage]:
    """``--image`` (resized as ``--fit`` says), else the sample scene; names made unique."""
    fit = args.fit or "stretch"
    if args.image:
        images = [load_image(p, cfg, resize=not args.no_resize, fit=fit) for p in args.image]
    else:
        images = [InputImage("sample", "sample scene", sample_scene(cfg, seed))]
    _unique_names(images)
    return images


def _weights(args, dep, cfg, notices: list[str]):
    """The run's weights: the bundle's, or the float model's source (shipped by default)."""
    if dep is not None:
        return bundle_weights(dep, args.checkpoint, args.seed, args.random)
    seed = 0 if args.seed is None else args.seed
    return weight_source(cfg, args.checkpoint, seed, args.random, notices=notices)


def _check_options(args: argparse.Namespace, backend, tiling: Tiling) -> None:
    """Options that do not apply to this run are errors, not silently ignored."""
    caps = backend.capabilities
    if args.timeout is not None and not caps.drives_board:
        raise EdgeMoeError(
            f"--timeout applies to driver backends ({_backends_that('drives_board')}), "
            f"not {args.backend!r}"
        )
    if args.check and isinstance(backend, TorchBackend):
        raise EdgeMoeError(
            f"--check compares the backend with torch: --backend {args.backend} is torch"
        )
    if args.no_host_check and not args.bundle:
        raise EdgeMoeError("--no-host-check applies only with --bundle")
    if args.no_host_check and not caps.drives_board:
        raise EdgeMoeError(
            f"--no-host-check lets the kernel refuse a bundle: it needs a driver backend "
            f"({_backends_that('drives_board')}), not {args.backend!r}"
        )
    if args.fit is not None and args.no_resize:
        raise EdgeMoeError("--fit chooses how to resize; --no-resize refuses to: pick one")
    if not caps.any_tiling and tiling != DEFAULT_TILING:
        raise EdgeMoeError(
            f"--backend {args.backend} runs the default build ({DEFAULT_TILING.key}); the "
            f"bundle is tiled {tiling.key}: use a backend that builds for it "
            f"({_backends_that('any_tiling', 'takes_bundle')})"
        )


def _backends_that(*capabilities: str) -> str:
    """The installed backends that have every one of ``capabilities``, for an error."""
    names = []
    for n in backend_names():
        try:
            caps = backend_capabilities(n)
        except Exception:  # a broken plug-in is not a candidate
            continue
        if all(getattr(caps, c) for c in capabilities):
            names.append(n)
    return ", ".join(names)


class _Progress:
    """Progress per image and task: a bar on a terminal, else a line a second (from 2 images)."""

    def __init__(self, total: int, images: int):
        self.total, self.done, self.last = total, 0, 0.0
        self.quiet = images < 2
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="edgemoe run", unit="output", file=sys.stderr)

    def step(self, what: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(what, refresh=False)
            self.bar.update(1)
            return
        now = time.perf_counter()
        if not self.quiet and (now - self.last >= 1.0 or self.done == self.total):
            self.last = now
            print(f"progress: {self.done}/{self.total} ({what})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_run(args: argparse.Namespace) -> int:
    """The ``edgemoe run`` command (see :func:`add_parser`)."""
    t_start = time.perf_counter()
    dep, cfg, profile, tiling = _build(args)
    if args.video is not None or args.schedule is not None:
        return _cmd_video(args, dep, cfg, profile, tiling)
    tasks = parse_tasks(args.task, cfg)
    check_batch(args.batch)
    backend = get_backend(args.backend)
    _check_options(args, backend, tiling)
    notices: list[str] = []
    source = _weights(args, dep, cfg, notices)

    # -- every input checked before any work --------------------------------
    images = _input_images(args, cfg, source.seed)
    out = check_out_dir(args.out, args.force)
    if dep is not None and not args.no_host_check:
        check_bundle(dep)
    for n in notices + [n for im in images for n in im.notices]:
        print(f"notice: {n}", file=sys.stderr)
    staging = staging_dir(out)
    try:
        settings = RunSettings(
            cfg=cfg,
            profile=profile,
            tiling=tiling,
            tasks=tasks,
            backend=backend,
            backend_name=args.backend,
            images=images,
            dep=dep,
            source=source,
            bundle_path=args.bundle,
            batch=args.batch,
            timeout_s=600.0 if args.timeout is None else args.timeout,
            check=args.check,
            figures=not args.no_figures,
            host_check=not args.no_host_check,
            untrained_heads=args.untrained_heads,
        )
        report = _run(settings, staging, t_start)
        write_json_atomic(staging / "report.json", report)
        publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    t = report["times_s"]
    print(
        f"{cfg.name} / {profile.name} / top_k {cfg.top_k} / backend {args.backend} / "
        f"{report['weights']}: {len(images)} image(s) "
        f"(up to {args.batch} per call) x {len(tasks)} task(s) -> {out}/  ("
        + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in t.items())
        + ")"
    )
    if args.check:
        for line in report["check"]["summary"]:
            print(line)
        return 0 if report["check"]["within_budget"] else 1
    return 0


def _cmd_video(args: argparse.Namespace, dep, cfg: ModelConfig, profile: Profile, tiling) -> int:
    """``edgemoe run --video``: see :mod:`edgemoe.host.app.video`."""
    from edgemoe.host.app import video

    if args.video is None:
        raise EdgeMoeError("--schedule chooses the task per frame of --video: give --video")
    for name in ("image", "task", "check"):
        if getattr(args, name):
            raise EdgeMoeError(f"--{name} does not apply with --video (--schedule picks tasks)")
    schedule = video.parse_schedule(args.schedule or "alternate", cfg)
    check_batch(args.batch)
    out = Path("video-out.mp4" if args.out == OUT_DEFAULT else args.out)
    if out.suffix.lower() not in video.VIDEO_SUFFIXES:
        raise EdgeMoeError(
            f"--out {args.out}: with --video, a video file ({', '.join(video.VIDEO_SUFFIXES)})"
        )
    report = out.with_name(out.stem + ".json")
    for p in (out, report):
        if p.exists() and not args.force:
            raise EdgeMoeError(f"--out: {p} exists (--force replaces it)")
    if not out.parent.is_dir():
        raise EdgeMoeError(f"--out {args.out}: no folder {out.parent}")
    video.need_video_io()
    backend = get_backend(args.backend)
    _check_options(args, backend, tiling)
    notices: list[str] = []
    source = _weights(args, dep, cfg, notices)
    frames = video.open_frames(args.video)
    if dep is not None and not args.no_host_check:
        check_bundle(dep)
    wl, more = workload(cfg, profile, dep, source, not backend.capabilities.takes_bundle)
    source = check_heads(source, wl, schedule.cycle, args.untrained_heads, name=_bundle_name(dep))
    for n in notices + more:
        print(f"notice: {n}", file=sys.stderr)
    timeout_s = 600.0 if args.timeout is None else args.timeout
    engine = Engine(wl, tiling, backend, max_images=args.batch, timeout_s=timeout_s)
    header = {
        "backend": args.backend,
        "config": cfg.name,
        "profile": profile.name,
        "tiling": tiling.key,
        "seed": source.seed,
        "weights": source.describe(),
        "heads": {t: source.head(t) for t in schedule.cycle},
        "bundle_sha256": engine.bundle_sha256,
    }
    settings = video.VideoSettings(
        frames,
        schedule,
        args.batch,
        out,
        report,
        args.fit or "stretch",
        not args.no_resize,
        args.backend,
        header,
    )
    r = video.run_video(engine, settings, cfg)
    for n in r["notices"]:
        print(f"notice: {n}", file=sys.stderr)
    print(
        f"{cfg.name} / backend {args.backend} / {source.describe()}: {r['video']['frames']} "
        f"frame(s), schedule {schedule.name}, up to {args.batch} per call -> {out} + {report.name}"
        f" ({r['fps']['end_to_end']:.2f} fps end to end, kernel busy "
        f"{100 * r['kernel_busy_fraction']:.0f}% of the wall time)"
    )
    return 0


@dataclass(frozen=True)
class RunSettings:
    """One ``edgemoe run``, checked: what it runs, on what, and the options that shape it.

    Attributes
    ----------
    cfg, profile, tiling
        The build (the bundle's, else the flags').
    tasks : list of str
        Task names, in the order they run.
    backend
        The backend object; ``backend_name`` its ``--backend`` name.
    images : list of InputImage
        The inputs, names made unique.
    dep : Deployment or None
        The bundle's contents (``--bundle``), else None (packed from the float model).
    source : WeightSource
        The float weights.
    bundle_path : str or None
        ``--bundle`` as given.
    batch : int
        Images per kernel call.
    timeout_s : float
        Seconds to wait for one kernel call (driver backends).
    check : bool
        Also run torch and compare under the fidelity rule.
    figures : bool
        Matplotlib figures wanted (``--no-figures`` unset).
    host_check : bool
        The host checked the bundle's kernel image (``--no-host-check`` unset).
    untrained_heads : bool
        Tasks whose head the checkpoint lacks may run (``--untrained-heads``).
    """

    cfg: ModelConfig
    profile: Profile
    tiling: Tiling
    tasks: list[str]
    backend: Backend
    backend_name: str
    images: list[InputImage]
    dep: Deployment | None
    source: WeightSource
    bundle_path: str | None
    batch: int
    timeout_s: float
    check: bool
    figures: bool
    host_check: bool
    untrained_heads: bool = False


def _bundle_name(dep: Deployment | None) -> str | None:
    """How a refusal names a bundle's weights (None: the checkpoint's name)."""
    return None if dep is None else dep.meta.get("name", "the bundle")


def _run(s: RunSettings, staging: Path, t_start: float) -> dict:
    """Every image and task of ``s`` through the library's :class:`~edgemoe.pipeline.Engine`:
    outputs rendered into ``staging``; the report."""
    float_model = not s.backend.capabilities.takes_bundle or s.check
    wl, notices = workload(s.cfg, s.profile, s.dep, s.source, float_model)
    # before any output: a head the checkpoint lacks is refused unless asked for
    source = check_heads(s.source, wl, s.tasks, s.untrained_heads, name=_bundle_name(s.dep))
    s = replace(s, source=source)
    for n in notices:
        print(f"notice: {n}", file=sys.stderr)
    max_images = min(s.batch, len(s.images))
    engine = Engine(wl, s.tiling, s.backend, max_images=max_images, timeout_s=s.timeout_s)
    torch_ref = Engine(wl, s.tiling, TorchBackend()) if s.check else None
    figures = s.figures and _figures_available()
    weights = s.source.describe()
    subtitle = f"weights: {weights}" + (f" (bundle {Path(s.bundle_path).name})" if s.dep else "")
    budgets = s.profile.budgets_for(s.source.checkpoint is not None)

    totals: dict[str, float] = {"setup": time.perf_counter() - t_start}
    per_image: list[dict] = []
    checks = []
    progress = _Progress(len(s.images) * len(s.tasks), len(s.images))
    pixels = np.stack([im.pixels for im in s.images])
    for call in engine.calls(pixels, s.tasks, s.batch, routes=s.check):
        batch = s.images[call.start : call.start + len(call.tokens)]
        if len(per_image) == call.start:  # the batch's first task: its entries and inputs
            per_image += [_image_entry(staging, im, len(batch)) for im in batch]
        ref = None
        if torch_ref is not None:
            ref = torch_ref.call(
                pixels[call.start : call.start + len(batch)], call.task, routes=True
            )
        share = {k: v / len(batch) for k, v in call.times.items()}  # shared evenly
        for j, im in enumerate(batch):
            tentry = _image_task(s, staging, im, j, call, ref, share, subtitle, figures, budgets)
            for k, v in tentry["times_s"].items():
                totals[k] = totals.get(k, 0.0) + v
            if "check" in tentry:
                checks.append((im.name, call.task, tentry["check"]))
            per_image[call.start + j]["tasks"][call.task] = tentry
            progress.step(f"{im.name} / {call.task}")
    progress.close()

    report = _report(s, weights, engine.bundle_sha256, totals, per_image)
    if s.check:
        report["check"] = _check_report(checks, budgets)
    return report


def _figures_available() -> bool:
    """Whether figures can be drawn (a notice when matplotlib is missing)."""
    if _have_matplotlib():
        return True
    print(
        "notice: matplotlib is not installed: no figures, only colour maps and overlays "
        "(pip install 'edgemoe[figures]', or --no-figures to say so)",
        file=sys.stderr,
    )
    return False


def _image_entry(staging: Path, im: InputImage, images_in_call: int) -> dict:
    """One image's report entry (its tasks filled in later), its input PNG written."""
    input_png = staging / f"{im.name}_input.png"
    save_png(input_png, im.pixels)
    return {
        "name": im.name,
        "source": im.source,
        "notices": im.notices,
        "input": input_png.name,
        "images_in_call": images_in_call,
        "tasks": {},
    }


def _image_task(
    s: RunSettings,
    staging: Path,
    im: InputImage,
    j: int,
    call: TaskCall,
    ref: TaskCall | None,
    share: dict[str, float],
    subtitle: str,
    figures: bool,
    budgets: dict[str, float],
) -> dict:
    """Image ``j`` of a call's batch for its task: its files rendered, its share of the
    call's times, and with ``ref`` (torch's call) its comparison with torch."""
    spec = s.cfg.task_spec(call.task)
    own = dict(share)
    t = time.perf_counter()
    title = f"{im.name}: {s.cfg.name} / {s.backend_name} / {call.task}"
    head = s.source.head(call.task)
    if head == "untrained head":
        title += f" ({head})"
    unit = _unit(s, call.task)
    files = _render(staging, im, spec, call.values[j], title, subtitle, figures, unit)
    own["render"] = time.perf_counter() - t
    tokens = np.ascontiguousarray(call.tokens[j])
    tentry = {
        "status": call.status,
        "head": head,
        "title": title,
        "files": files,
        # what the accelerator computed, to compare runs bit for bit (float64, row-major)
        "tokens_sha256": hashlib.sha256(tokens.tobytes()).hexdigest(),
        "times_s": own,
    }
    if ref is not None:
        tentry["check"] = _check_image(call, ref, j, spec, budgets)
    return tentry


def _check_image(call: TaskCall, ref: TaskCall, j: int, spec, budgets: dict[str, float]) -> dict:
    """Image ``j``'s ``--check`` entry: its tokens (routing included) and task output."""
    one = slice(j, j + 1)
    ref_out, output = ref.values[one], call.values[one]
    c = {
        "tokens": _check_pair(
            ref.tokens[one],
            call.tokens[one],
            budgets,
            ([r[one] for r in ref.routes], [r[one] for r in call.routes]),
        ),
        "task_output": _check_pair(ref_out, output, budgets),
    }
    if spec.kind == "classes":
        c["pixel_agreement"] = float((ref_out.argmax(axis=1) == output.argmax(axis=1)).mean())
    return c


def _report(s: RunSettings, weights: str, bundle_sha, totals: dict, per_image: list) -> dict:
    """``report.json`` of a run (its ``check`` section added by the caller)."""
    return {
        "backend": s.backend_name,
        "config": s.cfg.name,
        "profile": s.profile.name,
        "tiling": s.tiling.key,
        "tasks": s.tasks,
        "seed": s.source.seed,
        "top_k": s.cfg.top_k,
        "batch": s.batch,
        "checkpoint": s.source.checkpoint,
        "checkpoint_sha256": s.source.checkpoint_sha256,
        "weights": weights,
        "trained_on": s.source.trained_on,
        # per task: trained, untrained head (the checkpoint lacks it) or random init
        "heads": {t: s.source.head(t) for t in s.tasks},
        "bundle": {
            "path": s.bundle_path,
            "sha256": bundle_sha,
            "host_check": s.host_check,
        },
        "status": "OK",
        "times_s": totals,
        "images": per_image,
    }


def _check_report(checks: list[tuple[str, str, dict]], budgets: dict[str, float]) -> dict:
    """The report's ``check`` section: the verdict and one summary line per image and task."""

    def passed(c: dict) -> bool:
        return c["tokens"]["within_budget"] and c["task_output"]["within_budget"]

    summary = []
    for name, task, c in checks:
        summary.append(
            f"check {name} / {task} vs torch: tokens rel_rms={c['tokens']['rel_rms']:.3e} "
            f"cosine={c['tokens']['cosine']:.7f}; {task} rel_rms="
            f"{c['task_output']['rel_rms']:.3e} cosine={c['task_output']['cosine']:.7f}  "
            + (
                "PASS"
                if passed(c)
                else "FAIL: "
                + "; ".join(c["tokens"].get("missed", []) + c["task_output"].get("missed", []))
            )
        )
    return {
        "reference": "torch",
        "budgets": dict(budgets),
        "within_budget": all(passed(c) for *_, c in checks),
        "summary": summary,
    }


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _render(
    staging: Path,
    im: InputImage,
    spec,
    output: np.ndarray,
    title: str,
    subtitle: str,
    figure: bool = True,
    unit: str | None = None,
) -> dict:
    colours = task_rgb(spec, output)
    task = spec.name
    files = {
        "map": f"{im.name}_{task}.png",
        "overlay": f"{im.name}_{task}_overlay.png",
    }
    save_png(staging / files["map"], colours)
    save_png(staging / files["overlay"], blend(im.pixels, colours))
    if figure:
        files["figure"] = f"{im.name}_{task}_figure.png"
        task_figure(staging / files["figure"], im.pixels, spec, output, title, subtitle, unit)
    return files


def _unit(s: RunSettings, task: str) -> str | None:
    """The unit of a depth task's output: that of the data the checkpoint was trained on
    (:attr:`WeightSource.depth_unit`), else None (the figure's default: metres)."""
    return s.source.depth_unit if task == "depth" else None


def add_parser(sub) -> None:
    """Add the ``run`` subcommand to the ``edgemoe`` parser."""
    r = sub.add_parser(
        "run",
        help="run images through a backend: task PNGs + report.json",
        description="Run images through the backbone on a backend, then each task's final "
        "norm and head on the host: colour maps, overlays, figures and report.json.",
        formatter_class=HelpFormatter,
    )
    r.add_argument(
        "--image",
        nargs="+",
        default=None,
        metavar="PATH",
        help="input images (default: a built-in procedural street scene)",
    )
    r.add_argument(
        "--task", default=None, help="task name(s) or id(s), comma-separated (default: every task)"
    )
    r.add_argument("--backend", default="csim", help=f"one of: {backends_help()}")
    add_options(
        r,
        "config",
        "profile",
        config={
            "default": None,
            "help": f"config name or YAML path (default: the bundle's, else {DEFAULT_CONFIG})",
        },
        profile={
            "default": None,
            "help": "precision profile name or path (default: the bundle's, else "
            f"{DEFAULT_PROFILE})",
        },
    )
    r.add_argument(
        "--bundle",
        default=None,
        help="bundle file from `edgemoe export`: its config, profile, tiling, weights and task "
        "heads (no torch needed); default: packed from the float model",
    )
    add_options(
        r,
        "checkpoint",
        checkpoint={
            "help": "M3ViT checkpoint (default: the config's shipped trained checkpoint; with "
            "--bundle: must be the bundle's)"
        },
    )
    add_options(r, "random", "untrained_heads")
    r.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="experts per token (default: the bundle's, else the config's)",
    )
    add_options(
        r,
        "seed",
        seed={
            "default": None,
            "help": "seed of the random model and sample scene (default: the bundle's, else 0)",
        },
    )
    r.add_argument(
        "--out",
        default=OUT_DEFAULT,
        help="new or empty folder for the PNGs and report; with --video the output video "
        "(video-out.mp4 unless given), its report beside it (NAME.json)",
    )
    r.add_argument(
        "--video",
        default=None,
        metavar="IN",
        help="run a video instead of images: a video file (mp4, avi, gif, ...), a folder of "
        "frames (name order) or a camera index (OpenCV); needs pip install 'edgemoe[video]'",
    )
    r.add_argument(
        "--schedule",
        default=None,
        help="with --video, the task per frame: a task name, alternate (default), every:N "
        "(N frames per task in turn) or both (every task on every frame)",
    )
    r.add_argument(
        "--force", action="store_true", help="write into a non-empty --out (files replaced)"
    )
    r.add_argument(
        "--check",
        action="store_true",
        help="also run torch and report fidelity against the profile's budgets",
    )
    r.add_argument(
        "--fit",
        choices=FITS,
        default=None,
        help="how an image of another size is resized: stretch (default; may change the "
        "aspect ratio), crop (cover, central crop) or pad (fit, black borders)",
    )
    r.add_argument(
        "--no-resize",
        action="store_true",
        help="refuse images of another size instead of resizing them",
    )
    r.add_argument(
        "--no-figures",
        action="store_true",
        help="write colour maps and overlays only, no matplotlib figures (fast batch runs)",
    )
    r.add_argument(
        "--no-host-check",
        action="store_true",
        help="skip the host's check of the bundle's kernel image (the kernel's status code "
        "checks); driver backends with --bundle only",
    )
    r.add_argument(
        "--batch",
        type=int_range(1, MAX_IMAGES),
        default=MAX_GROUP,
        help=f"images per kernel call ({MAX_GROUP}: one expert-major group; 1: one "
        "image per call, the latency path). Every backend gives the same tokens either way",
    )
    r.add_argument(
        "--timeout",
        type=timeout_arg,
        default=None,
        help="seconds to wait for one kernel call, driver backends only (default: 600)",
    )
    r.set_defaults(func=cmd_run)
