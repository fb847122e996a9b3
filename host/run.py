"""``edgemoe run``: images -> backbone (any backend) -> light head -> PNGs and ``report.json``.

Everything that can be wrong with the input (image, task, bundle, ``--out``) is
checked before the first kernel call; outputs are written into a temporary
folder beside ``--out`` and moved into place only when every image succeeded,
so a failure never leaves a partial file in ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.models.config import ModelConfig, load_config
from edgemoe.models.heads import light_head_np

from .backends import TorchBackend, Workload, get_backend
from .bundle import BundleError, pack, validate
from .hls_params import MAX_IMAGES
from .plots import blend, save_png, task_figure, task_rgb
from .profile import load_profile
from .scratch import MAX_BATCH
from .tiling import DEFAULT_TILING
from .verify import cosine, rel_rms


class ImageError(EdgeMoeError):
    """An input image that cannot be read or used."""


@dataclass
class InputImage:
    """One image to run.

    Attributes
    ----------
    name : str
        Stem of the output files.
    source : str
        The path given, or ``"sample scene"``.
    pixels : uint8 (H, W, 3)
        At the config's resolution.
    notices : list[str]
        What was done to it (mode conversion, resize).
    """

    name: str
    source: str
    pixels: np.ndarray
    notices: list[str] = field(default_factory=list)


def load_image(path: str | Path, cfg: ModelConfig, resize: bool = True) -> InputImage:
    """Read an image file as RGB uint8 at the config's resolution.

    Grayscale, palette and alpha images are converted to RGB with a notice; an
    image of another size is resized (bilinear) with a notice, or refused when
    ``resize`` is False.

    Raises
    ------
    ImageError
        Missing or unreadable file, not an image, wrong size with ``resize=False``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    H, W = cfg.image_size
    notices = []
    try:
        with Image.open(path) as im:
            im.load()
            img = im
            if img.mode != "RGB":
                notices.append(f"image {path} is {img.mode}, converted to RGB")
                img = img.convert("RGB")
            if img.size != (W, H):
                if not resize:
                    raise ImageError(
                        f"image {path} is {img.size[0]}x{img.size[1]} (WxH), config {cfg.name} "
                        f"wants {W}x{H} (drop --no-resize to resize it)"
                    )
                notices.append(
                    f"image {path} is {img.size[0]}x{img.size[1]}, resized to {W}x{H} "
                    f"for {cfg.name}"
                )
                img = img.resize((W, H), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise ImageError(f"image {path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"image {path}: is a directory") from None
    except UnidentifiedImageError:
        raise ImageError(f"image {path}: not an image (Pillow cannot identify it)") from None
    except OSError as e:
        raise ImageError(f"image {path}: cannot read it ({e.strerror or e})") from None
    return InputImage(path.stem, str(path), pixels, notices)


def sample_scene(cfg: ModelConfig, seed: int = 0) -> np.ndarray:
    """A procedural street scene (H, W, 3) uint8 at the config's resolution.

    Sky gradient, buildings with windows, a road in perspective with lane
    marks, a pavement, trees and two cars: structure a segmentation head can
    respond to, with no image file needed.
    """
    rng = np.random.default_rng(seed)
    H, W = cfg.image_size
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.zeros((H, W, 3))
    horizon = 0.45 * H
    sky = (yy < horizon)[..., None]
    t = (yy / horizon)[..., None]
    img += sky * ((1 - t) * [0.35, 0.55, 0.85] + t * [0.75, 0.85, 0.95])
    # buildings along the horizon
    x = 0.0
    while x < W:
        bw = rng.uniform(0.08, 0.2) * W
        top = horizon - rng.uniform(0.15, 0.4) * H
        colour = rng.uniform(0.3, 0.6) * np.array([1.0, 0.95, 0.9])
        m = (xx >= x) & (xx < x + bw) & (yy >= top) & (yy < horizon)
        img[m] = colour
        win = m & ((xx - x) % 8 < 3) & ((yy - top) % 8 < 3) & (yy < horizon - 4)
        img[win] = [0.9, 0.85, 0.55]
        x += bw + rng.uniform(0, 0.03) * W
    # ground: pavement, then the road as a trapezoid narrowing to the vanishing point
    ground = yy >= horizon
    img[ground] = [0.55, 0.5, 0.5]
    depth = np.clip((yy - horizon) / (H - horizon), 0, 1)
    half = 0.05 * W + depth * 0.55 * W
    road = ground & (np.abs(xx - W / 2) < half)
    img[road] = [0.3, 0.3, 0.33]
    lane = road & (np.abs(xx - W / 2) < 0.01 * W + depth * 0.01 * W) & ((yy // 6) % 2 == 0)
    img[lane] = [0.95, 0.95, 0.9]
    # trees on the pavement, cars on the road
    for side in (-1, 1):
        cx = W / 2 + side * 0.4 * W
        cy, r = horizon - 0.05 * H, 0.12 * H
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = [0.2, 0.45, 0.15]
        img[(np.abs(xx - cx) < 0.01 * W + 1) & (yy >= cy) & (yy < horizon + 0.1 * H)] = [
            0.35,
            0.25,
            0.15,
        ]
    for cx, colour in ((0.4 * W, [0.7, 0.1, 0.1]), (0.62 * W, [0.1, 0.2, 0.6])):
        cy = horizon + 0.35 * (H - horizon)
        body = (np.abs(xx - cx) < 0.07 * W) & (np.abs(yy - cy) < 0.06 * H)
        img[body] = colour
        img[body & (yy < cy - 0.02 * H) & (np.abs(xx - cx) < 0.05 * W)] = [0.6, 0.75, 0.85]
    img += rng.normal(0, 0.02, size=img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def read_bundle(path: str | Path) -> bytes:
    """The bytes of a bundle file (one-line :class:`BundleError` when unreadable)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"bundle {path}: no such file") from None
    except OSError as e:
        raise BundleError(f"bundle {path}: cannot read it ({e.strerror or e})") from None


def _staging_dir(out: Path) -> Path:
    """A new empty folder beside ``out`` (same file system: the final move is a rename)."""
    if out.exists() and not out.is_dir():
        raise EdgeMoeError(f"cannot write --out {out}: exists and is not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except (FileExistsError, NotADirectoryError):
        raise EdgeMoeError(f"cannot write --out {out}: a parent path is not a folder") from None
    except OSError as e:
        raise EdgeMoeError(f"cannot write --out {out}: {e.strerror or e}") from None


def _publish(staging: Path, out: Path) -> None:
    """Move every staged file into ``out`` (created if missing)."""
    try:
        if not out.exists():
            os.replace(staging, out)
            return
        for f in sorted(staging.iterdir()):
            os.replace(f, out / f.name)
        staging.rmdir()
    except OSError as e:
        raise EdgeMoeError(f"cannot write --out {out}: {e.strerror or e}") from None


def _unique_names(images: list[InputImage]) -> None:
    seen: dict[str, int] = {}
    for im in images:
        n = seen.get(im.name, 0)
        seen[im.name] = n + 1
        if n:
            im.name = f"{im.name}_{n}"


def _task_list(text: str | None, cfg: ModelConfig) -> list[str]:
    if text is None:
        return list(cfg.task_names)
    names = []
    for t in (x.strip() for x in text.split(",") if x.strip()):
        names.append(cfg.task_names[cfg.task_id(int(t) if t.isdigit() else t)])
    if not names:
        raise EdgeMoeError("--task names no task")
    return names


def _check_pair(ref: np.ndarray, out: np.ndarray, budgets: dict[str, float]) -> dict:
    rr, cs = rel_rms(ref, out), cosine(ref, out)
    return {
        "rel_rms": rr,
        "cosine": cs,
        "within_budget": bool(rr <= budgets["rel_rms"] and cs >= budgets["cosine"]),
    }


def check_batch(n: int) -> None:
    """``--batch``: images per kernel call, as many as the kernel takes."""
    if not 1 <= n <= MAX_IMAGES:
        raise EdgeMoeError(f"--batch must be in 1..{MAX_IMAGES}")


def cmd_run(args: argparse.Namespace) -> int:
    """The ``edgemoe run`` command (see :func:`add_parser`)."""
    cfg = load_config(args.config)
    profile = load_profile(args.profile)
    tiling = DEFAULT_TILING
    tasks = _task_list(args.task, cfg)
    if args.timeout <= 0:
        raise EdgeMoeError("--timeout must be positive")
    check_batch(args.batch)
    backend = get_backend(args.backend)
    driven = hasattr(backend, "make_accelerator")
    if args.bundle and not driven:
        raise EdgeMoeError(
            f"--bundle needs a driver backend (sim or pynq); {args.backend!r} builds its "
            "weights from the model"
        )

    # -- every input checked before any work --------------------------------
    if args.image:
        images = [load_image(p, cfg, resize=not args.no_resize) for p in args.image]
    else:
        images = [InputImage("sample", "sample scene", sample_scene(cfg, args.seed))]
    _unique_names(images)
    for im in images:
        for n in im.notices:
            print(f"notice: {n}", file=sys.stderr)
    bundle_data = None
    if args.bundle:
        bundle_data = read_bundle(args.bundle)
        if not args.no_host_check:
            try:
                validate(bundle_data, cfg, profile, tiling)
            except BundleError as e:
                raise BundleError(f"bundle {args.bundle}: {e}") from None
    out = Path(args.out)
    staging = _staging_dir(out)
    try:
        report = _run(
            args, cfg, profile, tiling, tasks, backend, driven, images, bundle_data, staging
        )
        _write_json(staging / "report.json", report)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    t = report["times_s"]
    print(
        f"{cfg.name} / {profile.name} / backend {args.backend}: {len(images)} image(s) "
        f"(up to {args.batch} per call) x {len(tasks)} task(s) -> {out}/  ("
        + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in t.items())
        + ")"
    )
    if args.check:
        for line in report["check"]["summary"]:
            print(line)
        return 0 if report["check"]["within_budget"] else 1
    return 0


def _run(args, cfg, profile, tiling, tasks, backend, driven, images, bundle_data, staging) -> dict:
    from tqdm import tqdm

    from .cli import _build_model

    model, notices = _build_model(cfg, args.seed, args.checkpoint)
    budgets = profile.budgets_for(args.checkpoint is not None)
    for n in notices:
        print(f"notice: {n}", file=sys.stderr)
    wl = Workload(cfg, profile, model)
    state = wl.state
    acc = None
    bundle_sha = None
    if driven:
        acc = backend.make_accelerator(
            cfg, profile, tiling, max_images=min(args.batch, len(images))
        )
        data = bundle_data if bundle_data is not None else pack(wl.quantized, tiling)
        acc.load_bundle(data, host_check=False)  # checked above (or bypassed on purpose)
        bundle_sha = acc.bundle_sha256
    elif args.backend != "torch":
        bundle_sha = hashlib.sha256(pack(wl.quantized, tiling)).hexdigest()
    torch_ref = TorchBackend() if args.check else None

    totals: dict[str, float] = {}
    per_image = []
    checks = []
    progress = tqdm(
        total=len(images), desc="edgemoe run", unit="image", disable=None, file=sys.stderr
    )
    for start in range(0, len(images), args.batch):
        group = images[start : start + args.batch]
        entries = []
        for im in group:
            input_png = staging / f"{im.name}_input.png"
            save_png(input_png, im.pixels)
            entries.append(
                {
                    "name": im.name,
                    "source": im.source,
                    "notices": im.notices,
                    "input": input_png.name,
                    "images_per_call": len(group),
                    "tasks": {},
                }
            )
        batch = np.stack([im.pixels for im in group])
        for task in tasks:
            times: dict[str, float] = {}  # of the whole call
            if acc is not None:
                res = acc.run(batch, task, timeout_s=args.timeout)
                times.update(res.times)
                t = time.perf_counter()
                tokens = acc.to_float(res.raw)
                times["unpack"] += time.perf_counter() - t
                status = res.status
            else:
                ro = backend.run(wl, batch, task)
                tokens, status = ro.tokens, 0
                times["backbone"] = ro.seconds
            t = time.perf_counter()
            output = _head(tokens, state, task, cfg)
            times["head"] = time.perf_counter() - t
            if torch_ref is not None:
                ref_tokens = torch_ref.run(wl, batch, task).tokens
                ref_out = _head(ref_tokens, state, task, cfg)
            share = {k: v / len(group) for k, v in times.items()}  # shared evenly
            title = f"{cfg.name} / {args.backend} / {task}"
            for j, (im, entry) in enumerate(zip(group, entries, strict=True)):
                own = dict(share)
                t = time.perf_counter()
                files = _render(staging, im, task, output[j], title)
                own["render"] = time.perf_counter() - t
                for k, v in own.items():
                    totals[k] = totals.get(k, 0.0) + v
                tentry = {"status": status, "files": files, "times_s": own}
                if torch_ref is not None:
                    one = slice(j, j + 1)
                    c = {
                        "tokens": _check_pair(ref_tokens[one], tokens[one], budgets),
                        "task_output": _check_pair(ref_out[one], output[one], budgets),
                    }
                    if task == "semseg":
                        c["pixel_agreement"] = float(
                            (ref_out[one].argmax(axis=1) == output[one].argmax(axis=1)).mean()
                        )
                    tentry["check"] = c
                    checks.append((im.name, task, c))
                entry["tasks"][task] = tentry
        per_image += entries
        progress.update(len(group))
    progress.close()

    report = {
        "backend": args.backend,
        "config": cfg.name,
        "profile": profile.name,
        "tiling": tiling.key,
        "tasks": tasks,
        "seed": args.seed,
        "images_per_call": args.batch,
        "checkpoint": args.checkpoint,
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
                    else "FAIL"
                )
            )
        report["check"] = {
            "reference": "torch",
            "budgets": dict(budgets),
            "within_budget": ok,
            "summary": summary,
        }
    return report


def _head(tokens: np.ndarray, state: dict, task: str, cfg: ModelConfig) -> np.ndarray:
    return light_head_np(
        tokens,
        state[f"norms.{task}.weight"],
        state[f"norms.{task}.bias"],
        state[f"heads.{task}.weight"],
        state[f"heads.{task}.bias"],
        cfg,
    )


def _render(staging: Path, im: InputImage, task: str, output: np.ndarray, title: str) -> dict:
    colours = task_rgb(task, output)
    files = {
        "map": f"{im.name}_{task}.png",
        "overlay": f"{im.name}_{task}_overlay.png",
        "figure": f"{im.name}_{task}_figure.png",
    }
    save_png(staging / files["map"], colours)
    save_png(staging / files["overlay"], blend(im.pixels, colours))
    task_figure(staging / files["figure"], im.pixels, task, output, f"{im.name}: {title}")
    return files


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def add_parser(sub, default_config: str, default_profile: str) -> None:
    """Add the ``run`` subcommand to the ``edgemoe`` parser."""
    r = sub.add_parser("run", help="run images through a backend: task PNGs + report.json")
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
    r.add_argument(
        "--backend",
        default="csim",
        help="torch, golden, csim (driver + virtual board), csim-direct or pynq",
    )
    r.add_argument("--config", default=default_config, help="config name or YAML path")
    r.add_argument("--profile", default=default_profile, help="precision profile name or path")
    r.add_argument("--bundle", default=None, help="weight bundle (default: packed from the model)")
    r.add_argument("--checkpoint", default=None, help="M3ViT checkpoint instead of random init")
    r.add_argument("--seed", type=int, default=0, help="seed of the random model and sample")
    r.add_argument("--out", default="run-out", help="folder for the PNGs and report.json")
    r.add_argument(
        "--check",
        action="store_true",
        help="also run torch and report fidelity against the profile's budgets",
    )
    r.add_argument(
        "--no-resize",
        action="store_true",
        help="refuse images of another size instead of resizing them",
    )
    r.add_argument(
        "--no-host-check",
        action="store_true",
        help="skip the host's bundle validation (the kernel's status code checks)",
    )
    r.add_argument(
        "--batch",
        type=int,
        default=MAX_BATCH,
        help=f"images per kernel call (default {MAX_BATCH}: one expert-major group; 1: one "
        "image per call, the latency path). Every backend gives the same tokens either way",
    )
    r.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for one kernel call"
    )
    r.set_defaults(func=cmd_run)
