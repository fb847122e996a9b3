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
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.files import write_json_atomic
from edgemoe.host.app.args import (
    HelpFormatter,
    build_model,
    int_range,
    parse_tasks,
    seed_arg,
    timeout_arg,
)
from edgemoe.host.app.fidelity import budget_misses, cosine, rel_rms, routing
from edgemoe.host.app.inputs import FITS, InputImage, load_image
from edgemoe.host.app.outputs import check_out_dir, publish, staging_dir
from edgemoe.host.app.plots import blend, save_png, task_figure, task_rgb
from edgemoe.host.app.verify import with_top_k
from edgemoe.host.contracts.images import sample_scene
from edgemoe.host.contracts.profile import DEFAULT_PROFILE, config_hash, load_profile
from edgemoe.host.contracts.scratch import MAX_GROUP
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.driver.backends import (
    TorchBackend,
    Workload,
    backend_capabilities,
    backend_names,
    backends_help,
    get_backend,
    record_boundaries,
)
from edgemoe.host.export.bundle import BundleError, pack, read_bundle, validate
from edgemoe.host.export.deployment import (
    Deployment,
    WeightSource,
    check_kernel_image,
    checkpoint_digest,
    read_deployment,
)
from edgemoe.host.export.hls_params import MAX_IMAGES
from edgemoe.models.config import DEFAULT_CONFIG, ModelConfig, load_config
from edgemoe.models.heads import task_head_np


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
    missed = budget_misses(budgets, rr, cs, agreement)
    entry = {"rel_rms": rr, "cosine": cs, "within_budget": not missed}
    if missed:
        entry["missed"] = missed
    return entry


def check_batch(n: int) -> None:
    """``--batch``: images per kernel call, as many as the kernel takes."""
    if not 1 <= n <= MAX_IMAGES:
        raise EdgeMoeError(f"--batch must be in 1..{MAX_IMAGES}")


# ---- what a run uses: the bundle's settings, or the flags ----------------------


def _bundle_settings(args: argparse.Namespace, dep: Deployment) -> tuple:
    """Config, profile and tiling of ``run --bundle``: the bundle's; a flag must agree."""
    cfg, profile = dep.cfg, dep.profile
    if args.config is not None:
        want = load_config(args.config)
        if config_hash(want, profile) != config_hash(cfg, profile):
            same = " (another definition of that name)" if want.name == cfg.name else ""
            raise EdgeMoeError(
                f"--config {args.config} disagrees with bundle {args.bundle}, which is for "
                f"config {cfg.name}{same}: drop --config, the bundle names its config"
            )
    if args.profile is not None:
        want = load_profile(args.profile)
        if want.canonical() != profile.canonical():
            same = " (another definition of that name)" if want.name == profile.name else ""
            raise EdgeMoeError(
                f"--profile {args.profile} disagrees with bundle {args.bundle}, which is for "
                f"profile {profile.name}{same}: drop --profile, the bundle names its profile"
            )
    return cfg, profile, dep.tiling


def _weights(args: argparse.Namespace, dep: Deployment | None) -> WeightSource:
    """The float weights of this run; with a bundle, the ones it was exported from.

    Raises
    ------
    EdgeMoeError
        ``--checkpoint`` or ``--seed`` disagrees with the bundle's weights.
    """
    if dep is None:
        seed = 0 if args.seed is None else args.seed
        if args.random:
            if args.checkpoint is not None:
                raise EdgeMoeError("--random and --checkpoint name two different models: pick one")
            return WeightSource(None, None, seed)
        return WeightSource(args.checkpoint, None, seed)
    if args.random:
        raise EdgeMoeError("--random: the bundle names its weights (drop --random)")
    src = dep.source
    if args.seed is not None and args.seed != src.seed:
        raise EdgeMoeError(
            f"--seed {args.seed} disagrees with bundle {args.bundle}, exported from "
            f"{_source_text(src)}: drop --seed, the bundle names its weights"
        )
    if args.checkpoint is not None:
        if src.checkpoint is None:
            raise EdgeMoeError(
                f"--checkpoint {args.checkpoint}: bundle {args.bundle} was exported from "
                f"{_source_text(src)}, not from a checkpoint"
            )
        digest = checkpoint_digest(args.checkpoint)
        if digest != src.checkpoint_sha256:
            raise EdgeMoeError(
                f"--checkpoint {args.checkpoint} (SHA-256 {digest[:12]}…) is not the checkpoint "
                f"bundle {args.bundle} was exported from ({_source_text(src)})"
            )
        return WeightSource(args.checkpoint, digest, src.seed)
    return src


def _source_text(src: WeightSource) -> str:
    if src.checkpoint is None:
        return src.describe()
    return f"checkpoint {src.checkpoint}, SHA-256 {(src.checkpoint_sha256 or '?')[:12]}…"


def _float_model(cfg: ModelConfig, src: WeightSource, dep: Deployment | None, bundle: str | None):
    """The float model of ``src`` (torch); with a bundle, checked to be the bundle's."""

    checkpoint = src.checkpoint
    if dep is not None and checkpoint is not None and src is dep.source:
        # the path recorded at export: usable only if it is still that checkpoint
        path = Path(checkpoint)
        if not path.exists() or checkpoint_digest(path) != src.checkpoint_sha256:
            raise EdgeMoeError(
                f"the float model is needed (torch, --check) and bundle {bundle} was exported "
                f"from {_source_text(src)}, which is not here: pass --checkpoint PATH"
            )
    model, notices = build_model(cfg, src.seed, checkpoint)
    for n in notices:
        print(f"notice: {n}", file=sys.stderr)
    if dep is not None:
        state = model.state_dict()
        for name, want in dep.host.items():
            got = state[name].detach().cpu().numpy() if name in state else None
            if got is None or got.shape != want.shape or not np.array_equal(got, want):
                raise EdgeMoeError(
                    f"the float model ({src.describe()}) is not the one bundle {bundle} was "
                    f"exported from: {name} differs"
                )
    return model


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
    dep = None
    if args.bundle is not None:
        dep = read_deployment(read_bundle(args.bundle), f"bundle {args.bundle}")
        cfg, profile, tiling = _bundle_settings(args, dep)
        if args.top_k is not None and args.top_k != cfg.top_k:
            raise EdgeMoeError(
                f"--top-k {args.top_k} disagrees with bundle {args.bundle}, exported with "
                f"top_k {cfg.top_k}: drop --top-k, or export again with it"
            )
    else:
        cfg = with_top_k(load_config(args.config or DEFAULT_CONFIG), args.top_k)
        profile = load_profile(args.profile or DEFAULT_PROFILE)
        tiling = DEFAULT_TILING
    tasks = parse_tasks(args.task, cfg)
    check_batch(args.batch)
    if dep is None and args.checkpoint is None and not args.random:
        # the config's shipped trained weights, when it has them (--random: the seeded init)
        from edgemoe.models.shipped import shipped_checkpoint

        found = shipped_checkpoint(cfg.name)
        args.checkpoint = None if found is None else str(found)
    backend = get_backend(args.backend)
    driven = backend.capabilities.drives_board
    _check_options(args, backend, tiling)
    source = _weights(args, dep)

    # -- every input checked before any work --------------------------------
    fit = args.fit or "stretch"
    if args.image:
        images = [load_image(p, cfg, resize=not args.no_resize, fit=fit) for p in args.image]
    else:
        images = [InputImage("sample", "sample scene", sample_scene(cfg, source.seed))]
    _unique_names(images)
    out = check_out_dir(args.out, args.force)
    if dep is not None and not args.no_host_check:
        try:
            validate(dep.kernel_image, cfg, profile, tiling)
        except BundleError as e:
            raise BundleError(f"bundle {args.bundle}: {str(e).removeprefix('bundle ')}") from None
        check_kernel_image(dep, f"bundle {args.bundle}")
    for im in images:
        for n in im.notices:
            print(f"notice: {n}", file=sys.stderr)
    staging = staging_dir(out)
    try:
        report = _run(
            args, cfg, profile, tiling, tasks, backend, driven, images, dep, source, staging,
            t_start,
        )  # fmt: skip
        write_json_atomic(staging / "report.json", report)
        publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    t = report["times_s"]
    print(
        f"{cfg.name} / {profile.name} / top_k {cfg.top_k} / backend {args.backend}: "
        f"{len(images)} image(s) "
        f"(up to {args.batch} per call) x {len(tasks)} task(s) -> {out}/  ("
        + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in t.items())
        + ")"
    )
    if args.check:
        for line in report["check"]["summary"]:
            print(line)
        return 0 if report["check"]["within_budget"] else 1
    return 0


def _run(
    args, cfg, profile, tiling, tasks, backend, driven, images, dep, source, staging, t_start
) -> dict:
    caps = backend.capabilities
    model = None
    if dep is None or not caps.takes_bundle or args.check:
        model = _float_model(cfg, source, dep, args.bundle)
    if dep is not None:
        wl = Workload.from_bundle(cfg, profile, dep.kernel_image, dep.host, model)
    else:
        wl = Workload(cfg, profile, model)
    host = wl.state
    budgets = profile.budgets_for(source.checkpoint is not None)
    acc = None
    bundle_sha = None
    timeout = 600.0 if args.timeout is None else args.timeout
    if driven:
        acc = backend.make_accelerator(
            cfg, profile, tiling, max_images=min(args.batch, len(images))
        )
        data = dep.kernel_image if dep is not None else pack(wl.quantized, tiling)
        acc.load_bundle(data, host_check=False)  # checked above (or bypassed on purpose)
        bundle_sha = acc.bundle_sha256
    elif caps.takes_bundle:
        bundle_sha = hashlib.sha256(wl.bundle).hexdigest()
    torch_ref = TorchBackend() if args.check else None
    figures = not args.no_figures
    if figures and not _have_matplotlib():
        figures = False
        print(
            "notice: matplotlib is not installed: no figures, only colour maps and overlays "
            "(pip install 'edgemoe[figures]', or --no-figures to say so)",
            file=sys.stderr,
        )
    weights = source.describe()
    subtitle = f"weights: {weights}" + (f" (bundle {Path(args.bundle).name})" if dep else "")

    totals: dict[str, float] = {"setup": time.perf_counter() - t_start}
    per_image = []
    checks = []
    progress = _Progress(len(images) * len(tasks), len(images))
    for start in range(0, len(images), args.batch):
        batch = images[start : start + args.batch]
        entries = []
        for im in batch:
            input_png = staging / f"{im.name}_input.png"
            save_png(input_png, im.pixels)
            entries.append(
                {
                    "name": im.name,
                    "source": im.source,
                    "notices": im.notices,
                    "input": input_png.name,
                    "images_per_call": len(batch),
                    "tasks": {},
                }
            )
        pixels = np.stack([im.pixels for im in batch])
        for task in tasks:
            spec = cfg.task_spec(task)
            times: dict[str, float] = {}  # of the whole call
            routes: list[np.ndarray] = []
            if acc is not None:
                res = acc.run(pixels, task, timeout_s=timeout)
                times.update(res.times)
                t = time.perf_counter()
                tokens = acc.to_float(res.raw)
                times["unpack"] += time.perf_counter() - t
                status = res.status
                if torch_ref is not None:  # the routes, from runs stopped at each gate
                    _, routes = record_boundaries(
                        wl,
                        lambda stop, b=pixels, t=task: acc.run(b, t, stop, timeout).raw,
                        gates_only=True,
                    )
            else:
                ro = backend.run(wl, pixels, task, record=torch_ref is not None)
                tokens, status, routes = ro.tokens, 0, ro.routes
                times["backbone"] = ro.seconds
            t = time.perf_counter()
            output = task_head_np(tokens, host, task, cfg)
            times["head"] = time.perf_counter() - t
            if torch_ref is not None:
                ref_run = torch_ref.run(wl, pixels, task, record=True)
                ref_tokens = ref_run.tokens
                ref_out = task_head_np(ref_tokens, host, task, cfg)
            share = {k: v / len(batch) for k, v in times.items()}  # shared evenly
            title = f"{cfg.name} / {args.backend} / {task}"
            for j, (im, entry) in enumerate(zip(batch, entries, strict=True)):
                own = dict(share)
                t = time.perf_counter()
                files = _render(
                    staging, im, spec, output[j], f"{im.name}: {title}", subtitle,
                    figure=figures,
                )  # fmt: skip
                own["render"] = time.perf_counter() - t
                for k, v in own.items():
                    totals[k] = totals.get(k, 0.0) + v
                tentry = {"status": status, "files": files, "times_s": own}
                if torch_ref is not None:
                    one = slice(j, j + 1)
                    c = {
                        "tokens": _check_pair(
                            ref_tokens[one],
                            tokens[one],
                            budgets,
                            ([r[one] for r in ref_run.routes], [r[one] for r in routes]),
                        ),
                        "task_output": _check_pair(ref_out[one], output[one], budgets),
                    }
                    if spec.kind == "classes":
                        c["pixel_agreement"] = float(
                            (ref_out[one].argmax(axis=1) == output[one].argmax(axis=1)).mean()
                        )
                    tentry["check"] = c
                    checks.append((im.name, task, c))
                entry["tasks"][task] = tentry
                progress.step(f"{im.name} / {task}")
        per_image += entries
    progress.close()

    report = {
        "backend": args.backend,
        "config": cfg.name,
        "profile": profile.name,
        "tiling": tiling.key,
        "tasks": tasks,
        "seed": source.seed,
        "top_k": cfg.top_k,
        "images_per_call": args.batch,
        "checkpoint": source.checkpoint,
        "weights": weights,
        "bundle": {
            "path": args.bundle,
            "sha256": bundle_sha,
            "host_check": not args.no_host_check,
        },
        "status": "OK",
        "times_s": totals,
        "images": per_image,
    }
    if args.check:
        ok = all(
            c["tokens"]["within_budget"] and c["task_output"]["within_budget"] for *_, c in checks
        )
        summary = []
        for name, task, c in checks:
            summary.append(
                f"check {name} / {task} vs torch: tokens rel_rms={c['tokens']['rel_rms']:.3e} "
                f"cosine={c['tokens']['cosine']:.7f}; {task} rel_rms="
                f"{c['task_output']['rel_rms']:.3e} cosine={c['task_output']['cosine']:.7f}  "
                + (
                    "PASS"
                    if c["tokens"]["within_budget"] and c["task_output"]["within_budget"]
                    else "FAIL: "
                    + "; ".join(c["tokens"].get("missed", []) + c["task_output"].get("missed", []))
                )
            )
        report["check"] = {
            "reference": "torch",
            "budgets": dict(budgets),
            "within_budget": ok,
            "summary": summary,
        }
    return report


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
        task_figure(staging / files["figure"], im.pixels, spec, output, title, subtitle)
    return files


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
    r.add_argument(
        "--config",
        default=None,
        help=f"config name or YAML path (default: the bundle's, else {DEFAULT_CONFIG})",
    )
    r.add_argument(
        "--profile",
        default=None,
        help=f"precision profile name or path (default: the bundle's, else {DEFAULT_PROFILE})",
    )
    r.add_argument(
        "--bundle",
        default=None,
        help="bundle file from `edgemoe export`: its config, profile, tiling, weights and task "
        "heads (no torch needed); default: packed from the float model",
    )
    r.add_argument(
        "--checkpoint",
        default=None,
        help="M3ViT checkpoint (default: the config's shipped trained checkpoint; with "
        "--bundle: must be the bundle's)",
    )
    r.add_argument(
        "--random",
        action="store_true",
        help="the seeded random model instead of the shipped trained weights",
    )
    r.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="experts per token (default: the bundle's, else the config's)",
    )
    r.add_argument(
        "--seed",
        type=seed_arg,
        default=None,
        help="seed of the random model and sample scene (default: the bundle's, else 0)",
    )
    r.add_argument("--out", default="run-out", help="new or empty folder for the PNGs and report")
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
