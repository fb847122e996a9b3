"""``edgemoe eval``: task accuracy of a checkpoint on every backend, and expert usage.

Held-out scenes go through each backend's backbone (the same
:class:`~edgemoe.host.driver.backends.Backend` objects ``verify`` and ``run`` use) and
then through the host's light head (:func:`~edgemoe.models.heads.task_head_np`
with the task's own final norm), so backends differ only where the datapath
does. Per backend × profile × task: semseg mIoU, per-class IoU, pixel accuracy
and the fraction of pixels whose class differs from torch; depth on valid pixels;
each with its difference to torch.

The data says which depth it labels (its ``depth_unit``) and the depth output is
read in that unit: on procedural scenes (metres) abs error, abs_rel, RMSE (m) and
δ<1.25, mIoU over the classes present; on M3ViT's Cityscapes layout (disparity,
MTAN's scale) M3ViT's metrics: disparity RMSE and log-RMSE, mIoU over all classes
(an absent one counting 0). Labels −1 and 255 are ignored. A checkpoint whose
training record names data of the other unit is refused.

Expert usage comes from the float model (torch's recorded gates): per task and
MoE block, the share of routing weight (the top-k gate probabilities, summed
over tokens) each expert receives, the share of top-k slots, and how many
experts cover 90 % of the routing weight.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.files import write_json_atomic
from edgemoe.host.app.args import HelpFormatter, add_options, int_range
from edgemoe.host.contracts.profile import DEFAULT_PROFILE, Profile, load_profile
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.driver.backends import (
    Backend,
    TorchBackend,
    Workload,
    backends_help,
    get_backend,
)
from edgemoe.host.export.deployment import WeightSource
from edgemoe.host.export.hls_params import MAX_IMAGES
from edgemoe.models.config import ModelConfig, load_config
from edgemoe.models.data import DEPTH_UNIT_LABELS, DepthUnit
from edgemoe.models.metrics import (
    DepthAccumulator,
    DisparityAccumulator,
    confusion,
    semseg_metrics,
)
from edgemoe.pipeline import Engine, TaskCall, check_heads, float_workload, weight_source

FLOAT = "float"  # the profile column of the torch rows
#: Most held-out scenes one ``eval`` runs (the procedural val split is unbounded).
MAX_EVAL_IMAGES = 100_000
COVER = 0.9  # routing-weight share that "experts needed" counts up to
_SEMSEG_KEYS = ("miou", "pixel_acc")
#: Depth metrics per unit of the data: (key, table heading, format, whether it has the unit).
_DEPTH_COLUMNS: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "m": (
        ("abs_err", "abs err", ".3f", True),
        ("abs_rel", "abs_rel", ".4f", False),
        ("rmse", "RMSE", ".3f", True),
        ("delta1", "δ<1.25", ".4f", False),
    ),
    "disparity": (("rmse", "RMSE", ".4f", True), ("log_rmse", "log-RMSE", ".4f", False)),
}
#: How each depth unit's metrics are defined, for the table's foot and the JSON.
_DEPTH_NOTES = {
    "m": "depth in m on valid pixels (label > 0); abs_rel = mean |d − d*| / d*",
    "disparity": "depth as disparity (MTAN's scale: about Cityscapes' pixel disparity / 256) "
    "on valid pixels (label ≠ 0), predictions ≤ 0 read as 1e-9; log-RMSE of natural logs",
}


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class _Accumulator:
    """Running confusion matrix / depth sums of one (backend, profile, task), in the data's
    depth unit (disparity: M3ViT's metrics, its mIoU over every class included)."""

    def __init__(self, cfg: ModelConfig, task: str, depth_unit: DepthUnit = "m") -> None:
        self.cfg, self.task = cfg, task
        self.conf = np.zeros((cfg.task_channels(task),) * 2, np.int64)
        self.m3vit = depth_unit == "disparity"
        self.depth: DepthAccumulator | DisparityAccumulator = (
            DisparityAccumulator() if self.m3vit else DepthAccumulator()
        )
        self.differ = 0
        self.pixels = 0

    def add(self, out: np.ndarray, label: np.ndarray, ref: np.ndarray | None) -> None:
        if self.task == "semseg":
            pred = out.argmax(axis=1)
            self.conf += confusion(pred, label, self.conf.shape[0])
            if ref is not None:
                self.differ += int((pred != ref.argmax(axis=1)).sum())
                self.pixels += pred.size
        else:
            self.depth.add(out[:, 0], label)

    def result(self) -> dict[str, Any]:
        if self.task == "semseg":
            m = semseg_metrics(
                self.conf, self.cfg.task_spec("semseg").classes, absent_as_zero=self.m3vit
            )
            if self.pixels:
                m["class_differs_from_torch"] = self.differ / self.pixels
            return m
        return self.depth.result()


class _Usage:
    """Routing weight and top-k slots per (task, MoE block, expert), from torch's gates."""

    def __init__(self, cfg: ModelConfig) -> None:
        e = cfg.num_experts
        self.cfg = cfg
        self.weight = {t: {b: np.zeros(e) for b in cfg.moe_blocks} for t in cfg.task_names}
        self.slots = {t: {b: np.zeros(e) for b in cfg.moe_blocks} for t in cfg.task_names}

    def add(self, task: str, stages: dict[str, np.ndarray]) -> None:
        for b in self.cfg.moe_blocks:
            logits, mask = stages[f"block{b}.gate"], stages[f"block{b}.route"]
            w = _softmax(logits.astype(np.float64)) * mask
            e = logits.shape[-1]
            self.weight[task][b] += w.reshape(-1, e).sum(0)
            self.slots[task][b] += mask.reshape(-1, e).sum(0)

    def result(self, tasks: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for t in tasks:
            out[t] = {}
            for b in self.cfg.moe_blocks:
                w = self.weight[t][b] / max(self.weight[t][b].sum(), 1e-30)
                s = self.slots[t][b] / max(self.slots[t][b].sum(), 1)
                cover = int(np.searchsorted(np.cumsum(np.sort(w)[::-1]), COVER - 1e-12) + 1)
                out[t][str(b)] = {
                    "weight_share": [round(float(v), 5) for v in w],
                    "slot_share": [round(float(v), 5) for v in s],
                    "experts_90": min(cover, len(w)),
                    "unused": int((s == 0).sum()),
                }
        return out


def _same_outputs(a: TaskCall, b: TaskCall) -> bool:
    """Whether two fixed-point runs agree bit for bit: their tokens, and their decoder's
    logits (both absent where the datapath does not decode the task)."""
    if (a.logits is None) != (b.logits is None):
        return False
    same = a.logits is None or np.array_equal(a.logits, b.logits)
    return bool(same and np.array_equal(a.tokens, b.tokens))


def _fixed_pairs(fixed: list[Backend], profiles: list[Profile]) -> list[tuple[str, str, str, str]]:
    """Each pair of fixed-point backends under each profile: (its key, a's name, b's, the
    profile's), in the order of the report's ``bit_exact``."""
    return [
        (f"{a.name}-{b.name}/{p.name}", a.name, b.name, p.name)
        for i, a in enumerate(fixed)
        for b in fixed[i + 1 :]
        for p in profiles
    ]


def _rows(
    acc: dict, columns: list[tuple[str, str]], tasks: list[str], depth_unit: DepthUnit = "m"
) -> list[dict]:
    """One row per (backend, profile, task): its metrics and, but for torch, their ``delta``
    to torch's (per class for the IoU); a depth row names its ``unit``."""
    rows = []
    depth_keys = tuple(k for k, *_ in _DEPTH_COLUMNS[depth_unit])
    ref_metrics = {t: acc[("torch", FLOAT, t)].result() for t in tasks}
    for b, p in columns:
        for t in tasks:
            m = acc[(b, p, t)].result()
            keys = _SEMSEG_KEYS if t == "semseg" else depth_keys
            row = {"backend": b, "profile": p, "task": t, **m}
            if t == "depth":
                row["unit"] = depth_unit
            if b != "torch":
                row["delta"] = {k: m[k] - ref_metrics[t][k] for k in keys}
                if t == "semseg":
                    ref_iou = ref_metrics[t]["iou"]
                    row["delta"]["iou"] = {
                        c: None if v is None or ref_iou[c] is None else v - ref_iou[c]
                        for c, v in m["iou"].items()
                    }
            rows.append(row)
    return rows


def evaluate(
    cfg: ModelConfig,
    model: Any,
    source: Any,
    backends: list[Backend],
    profiles: list[Profile],
    images: int,
    batch: int = 8,
    split: str = "val",
    progress: bool = True,
) -> dict[str, Any]:
    """Metrics of every backend × profile × task on the first ``images`` scenes of ``split``.

    Returns
    -------
    dict
        ``rows``: one per (backend, profile, task) with the metrics and ``delta``
        (the difference of each to torch); ``bit_exact``: per pair of fixed-point
        backends and profile, whether their datapath outputs (the backbone's tokens, and
        the decoder's logits where the datapath decodes the task) were identical on
        every scene and task; ``usage``: :class:`_Usage` per task
        and MoE block; ``images``; ``seconds`` per backend; ``depth_unit`` (the
        data's: ``m`` or ``disparity``), ``units`` (how each metric is defined) and
        ``miou_mean`` (which mean mIoU is).
    """
    from tqdm import tqdm

    n = images if source.size(split) is None else min(images, source.size(split))
    if n < 1:
        raise EdgeMoeError(f"no scenes in split {split!r} of {source.name}")
    tasks = [t for t in cfg.task_names if t in source.tasks]
    depth_unit: DepthUnit = source.depth_unit
    torch_b = TorchBackend()
    fixed = [b for b in backends if b.capabilities.fixed_point]
    if not profiles:
        raise EdgeMoeError("eval needs at least one precision profile")
    workloads = {p.name: Workload(cfg, p, model) for p in profiles}
    wl0 = workloads[profiles[0].name]  # torch reads only the float model from it
    # the run path's engines: the backbone on the backend, the task's head on the host
    torch_e = Engine(wl0, DEFAULT_TILING, torch_b)
    engines = {
        (b.name, p.name): Engine(workloads[p.name], DEFAULT_TILING, b, max_images=batch)
        for b in fixed
        for p in profiles
    }
    columns = [("torch", FLOAT)] + [(b.name, p.name) for b in fixed for p in profiles]
    acc = {(b, p, t): _Accumulator(cfg, t, depth_unit) for b, p in columns for t in tasks}
    usage = _Usage(cfg)
    seconds = dict.fromkeys((f"{b}/{p}" for b, p in columns), 0.0)
    fixed_pairs = _fixed_pairs(fixed, profiles)
    same = {key: True for key, *_ in fixed_pairs}
    bar = tqdm(total=n, desc="edgemoe eval", unit="scene", disable=not progress, file=sys.stderr)
    for start in range(0, n, batch):
        data = source.batch(split, np.arange(start, min(start + batch, n)))
        for task in tasks:
            label = data.labels[task]
            ref = torch_e.call(data.images, task, record=True)
            usage.add(task, ref.stages)
            acc[("torch", FLOAT, task)].add(ref.values, label, None)
            seconds[f"torch/{FLOAT}"] += ref.seconds
            for p in profiles:
                outs: dict[str, TaskCall] = {}
                for b in fixed:
                    c = engines[(b.name, p.name)].call(data.images, task)
                    outs[b.name] = c
                    seconds[f"{b.name}/{p.name}"] += c.seconds
                    acc[(b.name, p.name, task)].add(c.values, label, ref.values)
                for key, a, b, pname in fixed_pairs:
                    if pname == p.name:
                        same[key] &= _same_outputs(outs[a], outs[b])
        bar.update(len(data))
    bar.close()

    return {
        "images": n,
        "split": split,
        "depth_unit": depth_unit,
        "units": {
            "depth": DEPTH_UNIT_LABELS[depth_unit],
            "depth_metrics": _DEPTH_NOTES[depth_unit],
        },
        "miou_mean": (
            "mean over every class, an absent one counting 0 (M3ViT's)"
            if depth_unit == "disparity"
            else "mean over the classes in the labels or predictions"
        ),
        "rows": _rows(acc, columns, tasks, depth_unit),
        "bit_exact": same,
        "usage": usage.result(tasks),
        "seconds": seconds,
    }


def table(result: dict[str, Any]) -> list[str]:
    """The eval table as text lines: one row per backend × profile × task; the depth
    columns are the data's (metres or disparity), their headings carry the unit."""
    unit = result.get("depth_unit", "m")
    depth_cols = _DEPTH_COLUMNS[unit]
    short = {"m": "m", "disparity": "disp"}[unit]
    heads = [f"{h} ({short})" if has_unit else h for _, h, _, has_unit in depth_cols]
    widths = [max(len(h) + 2, 9) for h in heads]
    lines = []
    head = f"{'backend':<12}{'profile':<10}{'task':<8}"
    lines.append(
        head
        + f"{'mIoU':>8}{'pix acc':>9}{'cls≠torch':>10}   "
        + "".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
    )
    for r in result["rows"]:
        d = r.get("delta", {})
        lead = f"{r['backend']:<12}{r['profile']:<10}{r['task']:<8}"
        if r["task"] == "semseg":
            diff = r.get("class_differs_from_torch")
            lines.append(
                lead
                + f"{r['miou']:>8.4f}{r['pixel_acc']:>9.4f}"
                + (f"{diff:>10.4%}" if diff is not None else f"{'':>10}")
            )
            if d:
                lines.append(f"{'':<30}{d['miou']:>+8.4f}{d['pixel_acc']:>+9.4f}   (Δ to torch)")
        else:
            cells = zip(depth_cols, widths, strict=True)
            lines.append(
                lead + f"{'':>27}   " + "".join(f"{r[k]:>{w}{f}}" for (k, _, f, _), w in cells)
            )
            if d:
                cells = zip(depth_cols, widths, strict=True)
                lines.append(
                    f"{'':<60}"
                    + "".join(f"{d[k]:>+{w}{f}}" for (k, _, f, _), w in cells)
                    + "   (Δ to torch)"
                )
    if any(r["task"] == "depth" for r in result["rows"]):
        lines.append(f"units: {_DEPTH_NOTES[unit]}")
    if "miou_mean" in result and any(r["task"] == "semseg" for r in result["rows"]):
        lines.append(f"mIoU: {result['miou_mean']}; labels -1 and 255 ignored")
    sem = [r for r in result["rows"] if r["task"] == "semseg" and r["backend"] == "torch"]
    if sem:
        lines.append(
            "torch per-class IoU: "
            + ", ".join(
                f"{c} {v:.3f}" if v is not None else f"{c} -" for c, v in sem[0]["iou"].items()
            )
        )
    for pair, ok in result.get("bit_exact", {}).items():
        lines.append(f"{pair}: datapath outputs {'bit-exact' if ok else 'DIFFER'}")
    for task, blocks in result["usage"].items():
        need = ", ".join(f"b{b} {u['experts_90']}" for b, u in blocks.items())
        unused = sum(u["unused"] for u in blocks.values())
        lines.append(
            f"experts covering {COVER:.0%} of {task}'s routing weight per MoE block: {need}"
            f" ({unused} expert slot(s) never chosen)"
        )
    return lines


def usage_heatmap(result: dict[str, Any], path: Path, title: str) -> None:
    """One PNG: rows (MoE block, task) × expert columns, the share of routing weight."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    usage = result["usage"]
    tasks = list(usage)
    blocks = list(next(iter(usage.values())))
    grid = np.array([usage[t][b]["weight_share"] for b in blocks for t in tasks])
    labels = [f"block {b} {t} ({usage[t][b]['experts_90']})" for b in blocks for t in tasks]
    e = grid.shape[1]
    fig = Figure(figsize=(2.8 + 0.42 * e, 1.6 + 0.32 * len(labels)))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0)
    ax.set_xticks(range(e))
    ax.set_xticklabels([str(i) for i in range(e)], fontsize=7)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("expert")
    for k in range(1, len(blocks)):
        ax.axhline(k * len(tasks) - 0.5, color="white", linewidth=1.5)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the task's routing weight")
    ax.set_title(f"{title}\nrow label: MoE block, task (experts covering {COVER:.0%})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _load_model(
    cfg: ModelConfig, checkpoint: str | None, tasks: list[str], untrained_heads: bool = False
) -> tuple[Any, list[str], WeightSource]:
    """The model to evaluate: ``checkpoint``, or the config's shipped one; a task of
    ``tasks`` whose head it lacks is refused unless ``untrained_heads``."""
    source = weight_source(cfg, checkpoint)
    if source.checkpoint is None:
        raise EdgeMoeError(f"no shipped checkpoint for {cfg.name}: pass --checkpoint")
    wl, notices = float_workload(cfg, load_profile(DEFAULT_PROFILE), source)
    return wl.model, notices, check_heads(source, wl, tasks, untrained_heads)


def cmd_eval(args: argparse.Namespace) -> int:
    from edgemoe.models.data import (
        HELDOUT_SEED,
        PROCEDURAL,
        ProceduralScenes,
        depth_in,
        open_source,
    )

    cfg = load_config(args.config)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if not names:
        raise EdgeMoeError("--backends needs at least one backend, e.g. torch,golden")
    backends = [get_backend(n) for n in names]
    profiles = [load_profile(p.strip()) for p in args.profile.split(",") if p.strip()]
    source = (
        ProceduralScenes(cfg, HELDOUT_SEED)
        if args.data == PROCEDURAL
        else open_source(args.data, cfg)
    )
    tasks = [t for t in cfg.task_names if t in source.tasks]
    model, notices, weights = _load_model(cfg, args.checkpoint, tasks, args.untrained_heads)
    ckpt = str(weights.checkpoint)
    predicts = weights.depth_unit
    if "depth" in source.tasks and predicts not in (None, source.depth_unit):
        raise EdgeMoeError(
            f"checkpoint {ckpt} predicts depth {depth_in(predicts)} (trained on "
            f"{weights.trained_on}), but {source.name} labels it {depth_in(source.depth_unit)}: "
            "evaluate a checkpoint trained on data of that kind"
        )
    for n in notices:
        print(f"notice: {n}", file=sys.stderr)
    result = evaluate(
        cfg,
        model,
        source,
        backends,
        profiles,
        args.images,
        args.batch,
        args.split,
        progress=not args.quiet,
    )
    result = {
        "config": cfg.name,
        "checkpoint": ckpt,
        "weights": weights.describe(),
        "trained_on": weights.trained_on,
        # per task: trained or untrained head (the checkpoint lacks it: --untrained-heads)
        "heads": {t: weights.head(t) for t in tasks},
        "data": source.name,
        "backends": names,
        "profiles": [p.name for p in profiles],
        **result,
    }
    for row in result["rows"]:
        row["head"] = weights.head(row["task"])
    print(
        f"{cfg.name} / {weights.describe()} / {result['images']} {args.split} scene(s) "
        f"of {source.name}"
    )
    for line in table(result):
        print(line)
    if args.json:
        write_json_atomic(Path(args.json), result)
        print(f"wrote {args.json}")
    if args.plot:
        path = Path(args.plot)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            usage_heatmap(result, path, f"{cfg.name} / {weights.describe()}")
        except OSError as e:
            raise EdgeMoeError(f"cannot write {path}: {e.strerror}") from None
        print(f"wrote {args.plot}")
    return 0


def add_parser(sub) -> None:
    """Add the ``eval`` subcommand to the ``edgemoe`` parser."""
    e = sub.add_parser(
        "eval",
        help="task accuracy of a checkpoint per backend, expert usage",
        description="Task accuracy (semseg mIoU and pixel accuracy, depth errors) of a "
        "checkpoint on held-out scenes, per backend and precision profile against torch, "
        "whether the fixed-point backends agree bit for bit, and the experts each task uses. "
        "Depth is read in the data's unit: metres on procedural scenes (abs err, abs_rel, "
        "RMSE, δ<1.25); disparity on M3ViT's Cityscapes layout, with M3ViT's metrics "
        "(disparity RMSE and log-RMSE, mIoU over all 7 classes).",
        formatter_class=HelpFormatter,
    )
    add_options(
        e,
        "config",
        "checkpoint",
        checkpoint={"help": "weights (default: the config's shipped checkpoint)"},
    )
    add_options(e, "untrained_heads")
    e.add_argument(
        "--backends",
        default="torch,golden,csim",
        help=f"comma-separated, of: {backends_help()}",
    )
    add_options(e, "profile", profile={"help": "precision profile(s), comma-separated"})
    e.add_argument(
        "--data",
        default="procedural",
        help="'procedural' (depth in metres) or a folder in M3ViT's preprocessed Cityscapes "
        "layout (depth as disparity)",
    )
    e.add_argument("--split", default="val", help="split to evaluate (val: held out)")
    e.add_argument(
        "--images", type=int_range(1, MAX_EVAL_IMAGES), default=16, help="scenes to evaluate"
    )
    e.add_argument(
        "--batch", type=int_range(1, MAX_IMAGES), default=8, help="scenes per backend call"
    )
    e.add_argument("--json", default=None, help="write every metric as JSON here")
    e.add_argument("--plot", default=None, help="write the expert-usage heatmap (PNG) here")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)
