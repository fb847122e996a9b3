"""``edgemoe bench``: every backend timed on the same machine in one run.

Each backend is measured in its own freshly spawned child process (one warm-up
call, then ``runs`` timed calls on one image), so that its peak memory is its
own. The child reports:

- milliseconds per image: median, min and max of the backend's own compute
  timer (``RunOutput.seconds``; for onnxruntime, numpy normalisation plus
  ``InferenceSession.run``). Work a deployment does once (C-sim build, bundle
  pack, board set-up, session creation) is outside the timer and reported
  separately as set-up time.
- peak RSS: the whole child process's high-water mark (``VmHWM``), including
  the Python interpreter, every import, the inputs and the weights; nothing is
  subtracted. ``ru_maxrss`` is not used on Linux: a spawned child inherits
  its parent's RSS high-water mark from the fork before ``exec``.
- the Python heap peak of one extra, untimed call under :mod:`tracemalloc`
  for the numpy-based backends (numpy reports its buffers to tracemalloc;
  torch's and onnxruntime's allocators do not, so theirs is not given).

What every backend computes is what the accelerator computes: the backbone
(tokens before the final norm) and, where the datapath decodes the task (a
``pup`` head), its decoder up to the logits; the host's resizes after them are
not timed.

``host`` never imports ``sim``: the numpy and C-sim backends are found by name
through the backend registry, like everywhere else.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import textwrap
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.files import write_json_atomic
from edgemoe.host.app.args import HelpFormatter, add_options, need_torch, parse_task
from edgemoe.host.contracts.images import random_images
from edgemoe.host.contracts.profile import DEFAULT_PROFILE, Profile, load_profile
from edgemoe.host.driver.backends import (
    Capabilities,
    Workload,
    backend_capabilities,
    backend_names,
    backends_help,
    get_backend,
)
from edgemoe.host.export.deployment import WeightSource
from edgemoe.models.config import DEFAULT_CONFIG, ModelConfig, load_config
from edgemoe.pipeline import (
    bundle_weights,
    bundle_workload,
    float_workload,
    open_bundle,
    weight_source,
    workload,
)

ONNXRUNTIME = "onnxruntime"
#: ``--backends``'s default; one of these that is not installed is a ``skipped`` row.
DEFAULT_BACKENDS = ("torch", ONNXRUNTIME, "golden", "csim-direct", "csim")
MIN_RUNS = 5
MB = 1024 * 1024

STATE_FILE = "state.npz"
ONNX_FILE = "backbone.onnx"

#: The ONNX export run by onnxruntime: timed beside the backends, not one of them.
ONNXRUNTIME_CAPABILITIES = Capabilities.float_model(
    "the backbone-only ONNX export on onnxruntime",
    timed="normalise (numpy) + InferenceSession.run of the backbone-only ONNX export",
    setup="InferenceSession created (ONNX export in the parent is reported under prepare)",
)


def capabilities(name: str) -> Capabilities:
    """What ``bench`` reads of a backend (onnxruntime included)."""
    return ONNXRUNTIME_CAPABILITIES if name == ONNXRUNTIME else backend_capabilities(name)


@dataclass(frozen=True)
class BenchJob:
    """What a child process needs to measure one backend (picklable)."""

    backend: str
    config: str
    profile: str
    task: str
    seed: int
    runs: int
    workdir: str
    source: WeightSource
    bundle: str | None = None  # the fixed-point backends run this bundle file


@dataclass
class BenchRow:
    """One backend's measurement, as written to the JSON ``backends`` map.

    Attributes
    ----------
    status : str
        ``ok``, ``skipped`` (an optional backend that is not installed) or ``failed``.
    ms_median, ms_min, ms_max : float or None
        Milliseconds per image of the ``runs`` timed calls (one image per call).
    runs : int
        Number of timed calls (after one warm-up call).
    ratio_to_torch : float or None
        ``ms_median`` over torch's ``ms_median`` (1.0 for torch itself).
    peak_rss_mb : float or None
        Whole-process peak RSS of the backend's own child process, MB of 2**20 bytes.
    py_heap_peak_mb : float or None
        tracemalloc peak of one untimed call (numpy-based backends only).
    rss_at_start_mb : float or None
        RSS of the child after its imports and inputs, before any backend set-up.
    warmup_ms : float or None
        The warm-up call's timer.
    setup_s : float or None
        One-off set-up before the warm-up call (see ``notes``).
    first_call_extra_s : float or None
        Wall time of the warm-up call outside the timer (lazy set-up, e.g. C-sim build).
    per_call_extra_ms : float or None
        Median wall time per timed call outside the timer.
    timed : str
        What the timer covers.
    notes : list of str
        Threads, caveats, why a row was skipped or failed.
    """

    status: str
    ms_median: float | None = None
    ms_min: float | None = None
    ms_max: float | None = None
    runs: int = 0
    ratio_to_torch: float | None = None
    peak_rss_mb: float | None = None
    py_heap_peak_mb: float | None = None
    rss_at_start_mb: float | None = None
    warmup_ms: float | None = None
    setup_s: float | None = None
    first_call_extra_s: float | None = None
    per_call_extra_ms: float | None = None
    timed: str = ""
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- child side


def _proc_status_mb(key: str) -> float | None:
    """A ``/proc/self/status`` memory line (``VmHWM``, ``VmRSS``) in MB, None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _peak_rss_mb(notes: list[str]) -> float:
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    notes.append("peak RSS from ru_maxrss (no /proc): may include the parent's RSS at fork")
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MB


def _ort_call(job: BenchJob, cfg: ModelConfig, images: np.ndarray, notes: list[str]):
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(Path(job.workdir) / ONNX_FILE), providers=["CPUExecutionProvider"]
    )
    notes.append(
        f"onnxruntime {ort.__version__}, CPUExecutionProvider, default thread settings; "
        "backbone-only export (models.onnx_export.export_backbone_onnx) with the MoE on the "
        "dense path: every expert runs on every token (masked), more MACs than sparse torch"
    )
    mean = np.asarray(cfg.pixel_mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(cfg.pixel_std, np.float32).reshape(1, -1, 1, 1)

    def call() -> float:
        t0 = time.perf_counter()
        x = images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
        session.run(None, {"images": np.ascontiguousarray((x - mean) / std)})
        return time.perf_counter() - t0

    return call


def _backend_call(job: BenchJob, cfg: ModelConfig, images: np.ndarray, notes: list[str]):
    profile = load_profile(job.profile) if job.bundle is None else None
    if not capabilities(job.backend).fixed_point:  # a float backend runs the float model
        import torch

        dep = open_bundle(job.bundle) if job.bundle is not None else None
        wl, _ = workload(cfg, profile or dep.profile, dep, job.source, True)
        notes.append(
            f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads "
            "(torch default, not changed)"
        )
    elif job.bundle is not None:  # the bundle's kernel image: no float model, no torch
        wl = bundle_workload(open_bundle(job.bundle))
        wl.quantized  # noqa: B018 -- unpack now, outside every timed call
    else:
        wl = Workload(cfg, profile, model=None)
        with np.load(Path(job.workdir) / STATE_FILE) as npz:
            wl.state = {k: npz[k] for k in npz.files}
        wl.quantized  # noqa: B018 -- quantize now, outside every timed call
    backend = get_backend(job.backend)

    def call() -> float:
        return backend.run(wl, images, job.task).seconds

    return call


def measure(job: BenchJob) -> dict[str, Any]:
    """Measure one backend; meant to run in a freshly spawned process.

    Returns
    -------
    dict
        ``times_s`` and ``walls_s`` of the timed calls, ``warmup_s``,
        ``warmup_wall_s``, ``setup_s``, ``rss_at_start_mb``, ``peak_rss_mb``,
        ``py_heap_peak_mb`` (or None), ``torch_threads`` (or None) and ``notes``.
    """
    cfg = open_bundle(job.bundle).cfg if job.bundle is not None else load_config(job.config)
    images = random_images(cfg, 1, job.seed)
    notes: list[str] = []
    rss_start = _proc_status_mb("VmRSS")

    t0 = time.perf_counter()
    if job.backend == ONNXRUNTIME:
        call = _ort_call(job, cfg, images, notes)
    else:
        call = _backend_call(job, cfg, images, notes)
    setup_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    warmup_s = call()
    warmup_wall_s = time.perf_counter() - t0
    times, walls = [], []
    for _ in range(job.runs):
        t0 = time.perf_counter()
        times.append(call())
        walls.append(time.perf_counter() - t0)
    peak = _peak_rss_mb(notes)  # before tracemalloc adds its own tables

    heap = None
    if capabilities(job.backend).heap_traced:
        tracemalloc.start()
        try:
            call()
            heap = tracemalloc.get_traced_memory()[1] / MB
        finally:
            tracemalloc.stop()
    if "torch" not in sys.modules:
        notes.append("torch not loaded in this process")
    torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    return {
        "times_s": times,
        "walls_s": walls,
        "warmup_s": warmup_s,
        "warmup_wall_s": warmup_wall_s,
        "setup_s": setup_s,
        "rss_at_start_mb": rss_start,
        "peak_rss_mb": peak,
        "py_heap_peak_mb": heap,
        "torch_threads": torch_threads,
        "notes": notes,
    }


# ---------------------------------------------------------------- parent side


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _row(job: BenchJob, m: dict[str, Any]) -> BenchRow:
    ms = [t * 1e3 for t in m["times_s"]]
    extra = [(w - t) * 1e3 for w, t in zip(m["walls_s"], m["times_s"], strict=True)]
    caps = capabilities(job.backend)
    notes = list(m["notes"])
    notes.append(f"set-up: {caps.setup}")
    if caps.first_call:
        notes.append(f"first-call extra: {caps.first_call}")
    if caps.per_call:
        notes.append(f"per-call extra: {caps.per_call}")
    return BenchRow(
        status="ok",
        ms_median=statistics.median(ms),
        ms_min=min(ms),
        ms_max=max(ms),
        runs=len(ms),
        peak_rss_mb=m["peak_rss_mb"],
        py_heap_peak_mb=m["py_heap_peak_mb"],
        rss_at_start_mb=m["rss_at_start_mb"],
        warmup_ms=m["warmup_s"] * 1e3,
        setup_s=m["setup_s"],
        first_call_extra_s=m["warmup_wall_s"] - m["warmup_s"],
        per_call_extra_ms=statistics.median(extra),
        timed=caps.timed,
        notes=notes,
    )


def _check_writable(path: Path) -> None:
    """Fail before any work if ``path`` cannot be written; creates nothing."""
    if path.is_dir():
        raise EdgeMoeError(f"cannot write {path}: is a directory")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise EdgeMoeError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgeMoeError(f"cannot write {path}: {parent} is not writable")


def parse_backends(text: str) -> list[str]:
    """Comma-separated backend names, duplicates dropped, each checked against the registry."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise EdgeMoeError("--backends is empty")
    known = {ONNXRUNTIME, *backend_names(), *DEFAULT_BACKENDS}
    for n in names:
        if n not in known:
            raise EdgeMoeError(f"unknown backend {n!r} (known: {', '.join(sorted(known))})")
    return names


def _prepare(
    cfg: ModelConfig,
    prof: Profile,
    task: str,
    source: WeightSource,
    names: list[str],
    workdir: Path,
) -> dict:
    """Write what the children load: the float weights and the ONNX export."""
    prepare: dict[str, Any] = {}
    if ONNXRUNTIME not in names and not any(_fixed_point(n) for n in names):
        return prepare  # a float backend's child builds its own model
    import torch

    from edgemoe.models.m3vit import normalize

    model = float_workload(cfg, prof, source)[0].model
    seed = source.seed
    np.savez(workdir / STATE_FILE, **{k: v.numpy() for k, v in model.state_dict().items()})
    if ONNXRUNTIME in names:
        import onnxruntime as ort

        from edgemoe.models.onnx_export import export_backbone_onnx

        _progress("exporting the backbone to ONNX")
        # the exporter warns about torchvision ops this model never uses
        onnx_log = logging.getLogger("torch.onnx")
        level = onnx_log.level
        onnx_log.setLevel(logging.ERROR)
        t0 = time.perf_counter()
        try:
            path = export_backbone_onnx(model, task, workdir / ONNX_FILE)
        finally:
            onnx_log.setLevel(level)
        prepare["onnx_export_s"] = time.perf_counter() - t0
        # the ONNX graph is the same backbone: check once, outside any timing
        x = normalize(random_images(cfg, 1, seed), cfg)
        with torch.no_grad():
            ref = model.backbone(x, task).numpy()
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"images": x.numpy()})[0]
        prepare["onnx_max_abs_vs_torch"] = float(np.abs(got - ref).max())
    return prepare


def _progress(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _measure_in_child(job: BenchJob) -> tuple[BenchRow, dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            raw = pool.submit(measure, job).result()
        return _row(job, raw), raw
    except EdgeMoeError as e:
        if capabilities(job.backend).drives_board and job.backend not in DEFAULT_BACKENDS:
            # a board backend asked for by name, off its board: the one-line error
            raise EdgeMoeError(f"bench --backends {job.backend}: {e}") from None
        row = BenchRow(status="failed", timed=_timed(job.backend), notes=[_one_line(e)])
        return row, {}
    except Exception as e:  # a failing backend is a row of the table, not the end of the run
        row = BenchRow(status="failed", timed=_timed(job.backend), notes=[_one_line(e)])
        return row, {}


def _unavailable(name: str, installed: set[str]) -> str | None:
    """Why a backend cannot run here, or None."""
    if not _fixed_point(name) and not _have_torch():
        return f"{name} runs the float model and PyTorch is not installed (edgemoe[full])"
    if name == ONNXRUNTIME:
        return None
    if name not in installed:
        return f"backend {name!r} is not installed in this environment"
    try:
        get_backend(name)
    except (EdgeMoeError, ImportError, AttributeError) as e:  # still being written
        return f"backend {name!r} cannot be loaded ({_one_line(e)})"
    return None


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _fixed_point(name: str) -> bool:
    """Whether a backend's child loads the float weights from the parent (it quantizes
    them); a backend that cannot be loaded counts as one (its row says why)."""
    try:
        return capabilities(name).fixed_point
    except Exception:
        return True


def _timed(name: str) -> str:
    """What the timer covers, or empty for a backend that cannot be loaded."""
    try:
        return capabilities(name).timed
    except Exception:
        return ""


def bench_backends(
    config: str | None,
    profile: str | None,
    backends: list[str],
    runs: int = MIN_RUNS,
    task: str | int | None = None,
    seed: int = 0,
    checkpoint: str | None = None,
    random: bool = False,
    bundle: str | None = None,
) -> dict[str, Any]:
    """Measure every backend in ``backends``, each in its own child process.

    Parameters
    ----------
    config, profile : str or None
        Config and precision profile, names or YAML paths (default: the bundle's, else
        the defaults).
    backends : list of str
        Backend names (:func:`parse_backends`); ``onnxruntime`` is the ONNX export
        of the backbone; an optional backend that is not installed becomes a
        ``skipped`` row.
    runs : int
        Timed calls per backend, at least :data:`MIN_RUNS`, after one warm-up call.
    task : str or int, optional
        Task name or id (selects the MoE gates); default the first.
    seed : int
        Seed of the image (and of the ``random`` model).
    checkpoint : str, optional
        The weights (default: the config's shipped checkpoint).
    random : bool
        The seeded random model instead.
    bundle : str, optional
        A bundle file: its config, profile and weights; the fixed-point backends run it
        (no torch), the float ones the model it was exported from.

    Returns
    -------
    dict
        The JSON document: set-up, machine, and ``backends`` (name -> :class:`BenchRow`).
    """
    if runs < MIN_RUNS:
        raise EdgeMoeError(f"--runs must be at least {MIN_RUNS}, got {runs}")
    installed = set(backend_names())
    notices: list[str] = []
    if bundle is not None:
        dep = open_bundle(bundle, config=config, profile=profile)
        cfg, prof = dep.cfg, dep.profile
        source = bundle_weights(dep, checkpoint, None, random)
    else:
        cfg = load_config(config or DEFAULT_CONFIG)
        prof = load_profile(profile or DEFAULT_PROFILE)
        source = weight_source(cfg, checkpoint, seed, random, notices=notices)
    task_name = parse_task(task, cfg)
    if bundle is None:
        need_torch()  # the float weights are quantized here (with a bundle: float rows skip)
    for n in notices:
        _progress(f"notice: {n}")

    load_before = _loadavg()
    rows: dict[str, BenchRow] = {}
    raw: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="edgemoe-bench-") as tmp:
        float_only = [n for n in backends if n == ONNXRUNTIME] if bundle is not None else backends
        prepare = _prepare(cfg, prof, task_name, source, float_only, Path(tmp))
        for name in backends:
            # a default backend that is not installed here is skipped, not an error
            why = _unavailable(name, installed) if name in DEFAULT_BACKENDS else None
            if why:
                rows[name] = BenchRow(status="skipped", timed=_timed(name), notes=[why])
                _progress(f"{name}: skipped ({why})")
                continue
            _progress(f"{name}: warm-up + {runs} timed runs in a child process")
            job = BenchJob(name, cfg.name, prof.name, task_name, seed, runs, tmp, source, bundle)
            rows[name], raw[name] = _measure_in_child(job)

    torch_ms = rows["torch"].ms_median if "torch" in rows else None
    for row in rows.values():
        if row.ms_median is not None and torch_ms:
            row.ratio_to_torch = row.ms_median / torch_ms
    torch_threads = raw.get("torch", {}).get("torch_threads")
    return {
        "config": cfg.name,
        "profile": prof.name,
        "task": task_name,
        "seed": seed,
        "weights": source.describe(),
        "images_per_call": 1,
        "warmup_runs": 1,
        "runs": runs,
        "computed": _computed(cfg, task_name),
        "timing": "ms per image from each backend's own timer, median/min/max of the timed runs",
        "memory": (
            "peak_rss_mb: whole-process peak RSS (VmHWM) of each backend's own spawned child "
            "process, including the Python interpreter, imports, inputs and weights; nothing "
            "subtracted. py_heap_peak_mb: tracemalloc peak of one extra untimed call"
        ),
        "machine": {
            "nproc": os.cpu_count(),
            "usable_cpus": _usable_cpus(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch_threads": torch_threads,
            # other work on the machine slows every row; these make a noisy run visible
            "loadavg_1m_before": load_before,
            "loadavg_1m_after": _loadavg(),
        },
        "prepare": prepare,
        "backends": {n: asdict(r) for n, r in rows.items()},
    }


def _computed(cfg: ModelConfig, task: str) -> str:
    """What the timers cover for ``task``: the accelerator's part of it."""
    if cfg.task_spec(task).head.on_datapath:
        return (
            "backbone tokens and the task decoder up to its logits (onnxruntime: the "
            "backbone only), no resizes, one image per call"
        )
    return "backbone tokens (before the final norm, no head), one image per call"


def _loadavg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _usable_cpus() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(result: dict[str, Any]) -> str:
    """The human-readable table of a :func:`bench_backends` result."""
    m = result["machine"]
    lines = [
        f"{result['config']} / {result['profile']} / task {result['task']} / "
        f"{result['computed']} / median of {result['runs']} runs after 1 warm-up",
        f"weights: {result['weights']}",
        f"machine: nproc {m['nproc']}, torch threads {m['torch_threads'] or '-'}, "
        f"{m['processor']}, {m['platform']}, load average (1 min) "
        f"{_fmt(m['loadavg_1m_before'], '.2f')} before, {_fmt(m['loadavg_1m_after'], '.2f')} after",
        "",
        f"{'backend':<12}{'median ms':>11}{'min ms':>10}{'max ms':>10}{'x torch':>9}"
        f"{'peak RSS MB':>13}{'py heap MB':>12}{'set-up s':>10}{'1st-call s':>12}",
    ]
    for name, r in result["backends"].items():
        if r["status"] != "ok":
            lines.append(f"{name:<12}  {r['status']}: {r['notes'][0] if r['notes'] else ''}")
            continue
        lines.append(
            f"{name:<12}{_fmt(r['ms_median'], '.2f'):>11}{_fmt(r['ms_min'], '.2f'):>10}"
            f"{_fmt(r['ms_max'], '.2f'):>10}{_fmt(r['ratio_to_torch'], '.2f'):>9}"
            f"{_fmt(r['peak_rss_mb'], '.1f'):>13}{_fmt(r['py_heap_peak_mb'], '.1f'):>12}"
            f"{_fmt(r['setup_s'], '.2f'):>10}{_fmt(r['first_call_extra_s'], '.2f'):>12}"
        )
    lines.append("")
    lines.append("peak RSS: whole-process peak of each backend's own child process")
    lines.append("  (Python + imports + inputs + weights, nothing subtracted);")
    lines.append("  py heap: tracemalloc peak of one untimed call, numpy-based backends only.")
    if "onnx_export_s" in result["prepare"]:
        p = result["prepare"]
        lines.append(
            f"ONNX export (parent, not timed): {p['onnx_export_s']:.1f} s; "
            f"max |onnxruntime - torch| = {p['onnx_max_abs_vs_torch']:.2e}"
        )
    for name, r in result["backends"].items():
        lines.append(f"{name}: timed = {r['timed']}" if r["timed"] else f"{name}:")
        for note in r["notes"][1 if r["status"] != "ok" else 0 :]:
            lines.extend(textwrap.wrap(note, 96, initial_indent="    ", subsequent_indent="      "))
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    """``edgemoe bench``: print the table, write ``--json``; exit 1 if a backend failed."""
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        _check_writable(json_path)
    names = parse_backends(args.backends)
    result = bench_backends(
        args.config,
        args.profile,
        names,
        args.runs,
        args.task,
        args.seed,
        args.checkpoint,
        args.random,
        args.bundle,
    )
    print(format_table(result))
    if json_path is not None:
        write_json_atomic(json_path, result)
        print(f"wrote {json_path}")
    failed = [n for n, r in result["backends"].items() if r["status"] == "failed"]
    return 1 if failed else 0


def add_parser(sub) -> None:
    """The ``bench`` subcommand."""
    b = sub.add_parser(
        "bench",
        help="time every backend on this machine in one run",
        description="Milliseconds per image of every backend on this machine, in one run.",
        formatter_class=HelpFormatter,
    )
    add_options(
        b,
        "config",
        "profile",
        config={"default": None, "help": f"config (default: the bundle's, else {DEFAULT_CONFIG})"},
        profile={
            "default": None,
            "help": f"precision profile (default: the bundle's, else {DEFAULT_PROFILE})",
        },
    )
    b.add_argument(
        "--bundle",
        default=None,
        help="bundle file: the fixed-point backends run it, no torch needed (a board); "
        "default: the weights quantized here",
    )
    b.add_argument("--task", default=None, help="task name or id (default: the first task)")
    add_options(
        b,
        "seed",
        "checkpoint",
        seed={"help": "seed of the image (and of the --random model)"},
        checkpoint={
            "help": "M3ViT checkpoint (default: the config's shipped trained checkpoint); a "
            "task head it lacks stays at its initial values: bench times the datapath, so it "
            "needs no --untrained-heads"
        },
    )
    add_options(b, "random")
    b.add_argument("--runs", type=int, default=MIN_RUNS, help=f"timed runs, >= {MIN_RUNS}")
    b.add_argument(
        "--backends",
        default=",".join(DEFAULT_BACKENDS),
        help=f"comma-separated, of: {ONNXRUNTIME} ({ONNXRUNTIME_CAPABILITIES.summary}); "
        f"{backends_help()}",
    )
    b.add_argument("--json", default=None, help="write the results as JSON here")
    b.set_defaults(func=cmd_bench)
