"""``edgemoe train``: multi-task training of M3ViT on procedural or Cityscapes scenes.

One step draws a batch (scene indices ``step * B …``, so the data is a pure
function of the seed and the step), picks a task (seeded per step, or both
tasks) and minimises

- semseg: cross-entropy of the task decoder's logits at the image size, label −1
  ignored;
- depth: ``depth_weight`` × L1 (metres) of the decoded depth on valid pixels;
- optionally ``balance`` × the MoE load-balance term per MoE block,
  ``E · Σ_e f_e · P_e`` (``f_e`` the fraction of top-k slots routed to expert
  ``e``, ``P_e`` its mean gate probability; 1 when uniform),

with AdamW (decoupled weight decay on weight matrices only), linear warmup and
cosine decay, gradient clipping. Files, from ``--out STEM``:

- ``STEM.safetensors`` fp16 weights (the shipped artefact) and ``STEM.json``
  (the training record: config, options, seed, data, curves, held-out
  metrics, wall time, command);
- ``STEM.state.safetensors`` + ``STEM.state.json``: fp32 weights, AdamW
  moments, step, RNG state and curves, for ``--resume`` (not shipped).

Every file is written atomically. On one thread a run is deterministic and a
resumed run ends bit-identical to an uninterrupted one.

Scaling out: started by ``torchrun --nproc_per_node N -m edgemoe train …`` (the
``WORLD_SIZE``/``RANK`` environment), the run is data-parallel with
:class:`torch.nn.parallel.DistributedDataParallel` (gloo on CPU, NCCL on GPUs,
one GPU per local rank): ``--batch`` is the global batch, split evenly across
ranks; losses are normalised by the global count of labelled pixels and the
decoders' batch norms take their batch statistics over every rank, so N
processes compute the gradient one process would on the whole batch (to float
rounding; the MoE balance term alone is per rank). Rank 0 evaluates and writes
every file; ``--resume`` reads the state on every rank. The record's
``rank_drift`` holds, per step, the largest difference of a parameter checksum
between ranks (0: identical weights).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgemoe.errors import EdgeMoeError
from edgemoe.files import write_json_atomic

from .checkpoint import load_checkpoint_result
from .config import ModelConfig, load_config
from .data import HELDOUT_SEED, PROCEDURAL, ProceduralScenes, SceneSource, open_source
from .m3vit import M3ViT, MoE, normalize
from .metrics import DepthAccumulator, DisparityAccumulator, confusion, semseg_metrics
from .weights import load_weights, read_tensors, save_tensors, save_weights

STATE_FORMAT = 1


@dataclass
class TrainOptions:
    """Everything that defines a training run (recorded; must match on ``--resume``)."""

    config: str
    data: str = PROCEDURAL
    steps: int = 1000
    batch: int = 8
    seed: int = 0
    lr: float = 5e-4
    min_lr: float = 1e-5
    warmup: int = -1  # steps; -1: 5 % of the run
    weight_decay: float = 0.05
    head_lr_mult: float = 10.0
    clip: float = 1.0
    tasks: str = "sample"  # 'sample': one task per step; 'both': every task every step
    depth_weight: float = 0.1
    class_balance: float = 0.0  # semseg class weights (median freq / freq) ** this; 0: none
    balance: float = 0.0
    eval_every: int = -1  # -1: 10 evaluations per run
    eval_images: int = 16
    final_eval_images: int = 64
    init: str = ""  # a checkpoint to start from (its backbone, norms, any heads); "": random

    def resolved(self) -> TrainOptions:
        """Copy with the automatic values filled in and every value checked."""
        o = TrainOptions(**asdict(self))
        for name in ("steps", "batch", "eval_images", "final_eval_images"):
            if getattr(o, name) < 1:
                raise EdgeMoeError(f"--{name.replace('_', '-')} must be at least 1")
        if o.tasks not in ("sample", "both"):
            raise EdgeMoeError(f"--tasks must be 'sample' or 'both', got {o.tasks!r}")
        if not (o.lr > 0 and 0 <= o.min_lr <= o.lr):
            raise EdgeMoeError("--lr must be positive and at least --min-lr")
        if o.warmup < 0:
            o.warmup = max(1, o.steps // 20)
        if o.eval_every < 0:
            o.eval_every = max(1, o.steps // 10)
        if o.eval_every < 1:
            raise EdgeMoeError("--eval-every must be at least 1")
        return o


def lr_at(step: int, o: TrainOptions) -> float:
    """Learning rate of step ``step`` (0-based): linear warmup, then cosine to ``min_lr``."""
    if step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    span = max(o.steps - o.warmup, 1)
    progress = min((step - o.warmup) / span, 1.0)
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * progress))


def _param_groups(model: M3ViT, o: TrainOptions) -> list[dict[str, Any]]:
    """Decay on weight matrices, expert weights and conv kernels; none on biases, norms,
    tokens, gates. The light heads train at ``head_lr_mult`` × the rate."""
    groups: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": [], "heads": []}
    for name, p in model.named_parameters():
        if name.startswith("heads."):
            groups["heads"].append(p)
        elif p.ndim >= 2 and name not in ("cls_token", "pos_embed") and "w_gate" not in name:
            groups["decay"].append(p)
        else:
            groups["no_decay"].append(p)
    return [
        {"params": groups["decay"], "weight_decay": o.weight_decay, "lr_mult": 1.0},
        {"params": groups["no_decay"], "weight_decay": 0.0, "lr_mult": 1.0},
        {"params": groups["heads"], "weight_decay": 0.0, "lr_mult": o.head_lr_mult},
    ]


class _RouteTap:
    """Forward hooks on every MoE block that keep the gate logits and top-k masks."""

    def __init__(self, model: M3ViT) -> None:
        self.logits: list[Tensor] = []
        self.masks: list[Tensor] = []
        self._handles = [
            m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, MoE)
        ]

    def _hook(self, module: nn.Module, args: Any, out: tuple[Tensor, Tensor, Tensor]) -> None:
        self.logits.append(out[1])
        self.masks.append(out[2])

    def clear(self) -> None:
        self.logits.clear()
        self.masks.clear()

    def balance_loss(self, part: slice = slice(None)) -> Tensor:
        """Mean over MoE blocks of ``E · Σ_e f_e · P_e`` (of the forwards in ``part``)."""
        terms = []
        for logits, mask in zip(self.logits[part], self.masks[part], strict=True):
            e = logits.shape[-1]
            p = torch.softmax(logits, dim=-1).reshape(-1, e)
            f = mask.reshape(-1, e).to(p.dtype)
            f = f.sum(0) / f.sum()
            terms.append(e * (f * p.mean(0)).sum())
        return torch.stack(terms).mean()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def task_loss_sum(
    out: Tensor, label: Tensor, task: str, o: TrainOptions, weight: Tensor | None = None
) -> tuple[Tensor, int]:
    """Summed loss of one task's output ``(B, C, H, W)`` and the labelled pixel count.

    ``weight``: per-class weights of the semseg cross-entropy (:func:`class_weights`).
    """
    if task == "semseg":
        n = int((label >= 0).sum())
        if not n:
            return out.sum() * 0.0, 0
        return F.cross_entropy(out, label, weight, ignore_index=-1, reduction="sum"), n
    if task == "depth":
        valid = label > 0
        n = int(valid.sum())
        if not n:
            return out.sum() * 0.0, 0
        return o.depth_weight * (out[:, 0][valid] - label[valid]).abs().sum(), n
    raise EdgeMoeError(f"no training loss for task {task!r} (known: semseg, depth)")


def class_weights(source: SceneSource, cfg: ModelConfig, o: TrainOptions) -> Tensor | None:
    """Median-frequency class weights ``(median f / f_c) ** class_balance`` of semseg.

    Frequencies are counted on the first 64 training scenes (a pure function of the
    data), a class never seen there gets the largest weight; ``None`` when
    ``class_balance`` is 0 or there is no semseg task.
    """
    if o.class_balance <= 0 or "semseg" not in source.tasks:
        return None
    c = cfg.task_channels("semseg")
    counts = np.zeros(c, np.float64)
    for start in range(0, 64, 8):
        lab = source.batch("train", np.arange(start, start + 8))
        sem = lab.labels["semseg"]
        counts += np.bincount(sem[sem >= 0], minlength=c)[:c]
    freq = counts / counts.sum()
    seen = freq > 0
    w = np.ones(c)
    w[seen] = (np.median(freq[seen]) / freq[seen]) ** o.class_balance
    w[~seen] = w[seen].max() if seen.any() else 1.0
    return torch.tensor(w, dtype=torch.float32)


def task_loss(out: Tensor, label: Tensor, task: str, o: TrainOptions) -> Tensor:
    """Mean loss of one task's output ``(B, C, H, W)`` over its labelled pixels."""
    total, n = task_loss_sum(out, label, task, o)
    return total / max(n, 1)


@dataclass(frozen=True)
class _Dist:
    """This process's place in a ``torchrun`` job (world 1: a plain run)."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def lead(self) -> bool:
        return self.rank == 0


def _dist_setup() -> _Dist:
    """Join the ``torchrun`` process group named by the environment, if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    gpu = torch.cuda.is_available()
    device = f"cuda:{local}" if gpu else "cpu"
    if gpu:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
    return _Dist(rank, world, device)


def _all_sum(values: list[float], d: _Dist) -> list[float]:
    """``values`` summed over ranks (float64)."""
    if d.world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def _rank_drift(model: nn.Module, d: _Dist) -> float:
    """Largest difference between ranks of a float64 checksum of every parameter."""
    import torch.distributed as dist

    with torch.no_grad():
        sums = [p.detach().double().sum() for p in model.parameters()]
        sq = [(p.detach().double() ** 2).sum() for p in model.parameters()]
        mine = torch.stack([torch.stack(sums).sum(), torch.stack(sq).sum()])
    every = [torch.zeros_like(mine) for _ in range(d.world)]
    dist.all_gather(every, mine)
    return max(float((e - every[0]).abs().max()) for e in every)


class _Step(nn.Module):
    """One training forward of every task of a step (one DDP forward per step)."""

    def __init__(self, model: M3ViT) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, tasks: list[str]) -> list[Tensor]:
        return [self.model(x, t) for t in tasks]


def _tasks_of_step(step: int, cfg: ModelConfig, o: TrainOptions, source: SceneSource) -> list[str]:
    tasks = [t for t in cfg.task_names if t in source.tasks]
    if o.tasks == "both":
        return tasks
    rng = np.random.default_rng([o.seed, 7, step])
    return [tasks[int(rng.integers(len(tasks)))]]


def _train_indices(step: int, o: TrainOptions, source: SceneSource) -> np.ndarray:
    """Scene indices of a step: consecutive for procedural data, epoch-shuffled for files."""
    flat = step * o.batch + np.arange(o.batch)
    n = source.size("train")
    if n is None:
        return flat
    out = np.empty_like(flat)
    for j, k in enumerate(flat):
        perm = np.random.default_rng([o.seed, 11, int(k // n)]).permutation(n)
        out[j] = perm[k % n]
    return out


@torch.no_grad()
def evaluate(
    model: M3ViT, source: SceneSource, images: int, batch: int = 8, split: str = "val"
) -> dict[str, dict]:
    """Float metrics of ``model`` on the first ``images`` scenes of ``split``, every task."""
    cfg = model.cfg
    device = next(model.parameters()).device
    n = images if source.size(split) is None else min(images, source.size(split) or 0)
    conf = None
    disparity = getattr(source, "depth_unit", "m") == "disparity"
    depth: DepthAccumulator | DisparityAccumulator = (
        DisparityAccumulator() if disparity else DepthAccumulator()
    )
    for start in range(0, n, batch):
        b = source.batch(split, np.arange(start, min(start + batch, n)))
        x = normalize(b.images, cfg).to(device)
        for task in source.tasks:
            tokens = model.backbone(x, task)
            out = model.task_output(tokens, task).cpu().numpy()
            if task == "semseg":
                c = cfg.task_channels(task)
                cm = confusion(out.argmax(1), b.labels[task], c)
                conf = cm if conf is None else conf + cm
            elif task == "depth":
                depth.add(out[:, 0], b.labels[task])
    result: dict[str, dict] = {}
    if conf is not None:
        # on M3ViT's Cityscapes layout, M3ViT's mIoU (over every class), as ``eval`` reports it
        classes = cfg.task_spec("semseg").classes
        result["semseg"] = semseg_metrics(conf, classes, absent_as_zero=disparity)
    if "depth" in source.tasks:
        result["depth"] = depth.result()
    return result


def _short(metrics: dict[str, dict]) -> dict[str, float]:
    out = {}
    if "semseg" in metrics:
        out["miou"] = round(metrics["semseg"]["miou"], 4)
        out["pixel_acc"] = round(metrics["semseg"]["pixel_acc"], 4)
    if "depth" in metrics and "log_rmse" in metrics["depth"]:
        out["disparity_rmse"] = round(metrics["depth"]["rmse"], 4)
        out["disparity_log_rmse"] = round(metrics["depth"]["log_rmse"], 4)
    elif "depth" in metrics:
        out["abs_rel"] = round(metrics["depth"]["abs_rel"], 4)
        out["rmse"] = round(metrics["depth"]["rmse"], 3)
    return out


def _paths(out: str | Path) -> dict[str, Path]:
    stem = Path(out)
    if stem.suffix == ".safetensors":
        stem = stem.with_suffix("")
    return {
        "weights": stem.with_name(stem.name + ".safetensors"),
        "record": stem.with_name(stem.name + ".json"),
        "state": stem.with_name(stem.name + ".state.safetensors"),
        "state_json": stem.with_name(stem.name + ".state.json"),
    }


def _save_state(
    paths: dict[str, Path],
    model: M3ViT,
    opt: torch.optim.AdamW,
    names: dict[int, str],
    meta: dict[str, Any],
) -> None:
    tensors = {f"model.{k}": v.cpu() for k, v in model.state_dict().items()}
    for p, st in opt.state.items():
        name = names[id(p)]
        for k in ("exp_avg", "exp_avg_sq", "step"):
            tensors[f"adam.{name}.{k}"] = (st[k].reshape(-1) if k == "step" else st[k]).cpu()
    save_tensors(tensors, paths["state"], {"format": "pt"})
    write_json_atomic(paths["state_json"], meta)


def _load_state(
    paths: dict[str, Path], model: M3ViT, opt: torch.optim.AdamW, names: dict[int, str]
) -> dict[str, Any]:
    import json

    if not paths["state"].is_file() or not paths["state_json"].is_file():
        raise EdgeMoeError(f"--resume: no training state at {paths['state']}")
    try:
        meta = json.loads(paths["state_json"].read_text())
    except ValueError:
        raise EdgeMoeError(f"--resume: {paths['state_json']} is not JSON") from None
    tensors = read_tensors(paths["state"])
    sd = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(sd, strict=True)
    by_name = {names[id(p)]: p for g in opt.param_groups for p in g["params"]}
    for name, p in by_name.items():
        key = f"adam.{name}"
        if f"{key}.step" in tensors:
            opt.state[p] = {
                "step": tensors[f"{key}.step"].reshape(()).clone(),
                "exp_avg": tensors[f"{key}.exp_avg"].to(p.device, copy=True),
                "exp_avg_sq": tensors[f"{key}.exp_avg_sq"].to(p.device, copy=True),
            }
    return meta


def _curve_summary(losses: list[list], window: int) -> list[dict[str, float]]:
    """Mean loss per window of steps (all tasks together, and per task)."""
    out = []
    for start in range(0, len(losses), window):
        chunk = losses[start : start + window]
        row: dict[str, float] = {
            "step": chunk[-1][0] + 1,
            "loss": round(float(np.mean([c[2] for c in chunk])), 4),
        }
        for task in sorted({c[1] for c in chunk}):
            row[task] = round(float(np.mean([c[2] for c in chunk if c[1] == task])), 4)
        out.append(row)
    return out


def train(
    options: TrainOptions,
    out: str | Path,
    *,
    resume: bool = False,
    threads: int = 1,
    stop_after: int | None = None,
    command: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume) a run and write its files (see the module docstring).

    Parameters
    ----------
    options : TrainOptions
        The run; on ``resume`` it must equal the recorded one.
    out : str or pathlib.Path
        File stem of the outputs (a ``.safetensors`` suffix is dropped).
    resume : bool
        Continue from ``{out}.state.*``.
    threads : int
        Torch intra-op threads (1: deterministic).
    stop_after : int, optional
        Stop after this many steps of the schedule (state saved; resume later).
    command : str
        The command line, for the record.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    dict
        The training record (also written to ``{out}.json``), with ``rank``: this
        process's rank (0 in a plain run; in a ``torchrun`` job every rank returns
        the record rank 0 wrote).
    """
    from tqdm import tqdm

    o = options.resolved()
    if threads < 1:
        raise EdgeMoeError("--threads must be at least 1")
    if stop_after is not None and not 1 <= stop_after <= o.steps:
        raise EdgeMoeError(f"--stop-after must be in 1..{o.steps}")
    torch.set_num_threads(threads)
    cfg = load_config(o.config)
    source = open_source(o.data, cfg, o.seed)
    heldout = (
        ProceduralScenes(cfg, HELDOUT_SEED) if o.data == PROCEDURAL else open_source(o.data, cfg)
    )
    paths = _paths(out)
    for p in paths.values():
        if p.is_dir():
            raise EdgeMoeError(f"cannot write {p}: is a directory")
    d = _dist_setup()
    if o.batch % d.world:
        raise EdgeMoeError(f"--batch {o.batch} does not split over {d.world} processes")
    local = o.batch // d.world

    weights = class_weights(source, cfg, o)
    if weights is not None:
        weights = weights.to(d.device)
    model = M3ViT(cfg, seed=o.seed)
    init_notices: list[str] = []
    if o.init:
        init_notices = load_checkpoint_result(model, o.init).notices
    if "depth" in cfg.task_names and source.depth_unit == "m":
        # start the depth output at a typical depth: the last bias would need
        # thousands of AdamW steps to get there from 0
        far = 0.25 * float(cfg.task_spec("depth").far or 80.0)
        with torch.no_grad():
            if "depth" in model.heads and not _has_head(o.init, "heads.depth."):
                model.heads["depth"].bias.fill_(far)
            if "depth" in model.decoders and not _has_head(o.init, "decoders.depth."):
                last = getattr(
                    model.decoders["depth"], f"conv_{cfg.task_spec('depth').head.convs - 1}"
                )
                last.bias.fill_(far)
    model.to(d.device)
    model.train()
    groups = _param_groups(model, o)
    opt = torch.optim.AdamW(groups, lr=o.lr, betas=(0.9, 0.999), eps=1e-8)
    names = {id(p): n for n, p in model.named_parameters()}
    tap = _RouteTap(model)

    meta: dict[str, Any] = {
        "format": STATE_FORMAT,
        "options": asdict(o),
        "step": 0,
        "losses": [],
        "evals": [],
        "wall_seconds": 0.0,
        "commands": [],
    }
    if resume:
        saved = _load_state(paths, model, opt, names)
        old = {"init": "", "class_balance": 0.0, **saved.get("options", {})}
        # A resumed run may be given another length: the cosine decay is re-planned
        # from the saved step on (warmup and evaluation period stay the run's own).
        replan = o.steps != old.get("steps")
        free = ("steps", "warmup", "eval_every") if replan else ()
        diff = [
            f"{k}: {old.get(k)!r} -> {v!r}"
            for k, v in asdict(o).items()
            if k not in free and old.get(k) != v
        ]
        if diff:
            raise EdgeMoeError(f"--resume: the run's options differ ({'; '.join(diff)})")
        if replan:
            if o.steps <= saved["step"]:
                raise EdgeMoeError(
                    f"--resume --steps {o.steps}: the run is already at step {saved['step']}"
                )
            o = TrainOptions(**{**old, "steps": o.steps})
            saved.setdefault("replans", []).append(
                {"at_step": saved["step"], "steps_from": old["steps"], "steps_to": o.steps}
            )
            saved["options"] = asdict(o)
            if stop_after is not None and not 1 <= stop_after <= o.steps:
                raise EdgeMoeError(f"--stop-after must be in 1..{o.steps}")
        meta = saved
    elif init_notices:
        meta["init_notices"] = init_notices
    if weights is not None:
        meta["class_weights"] = [round(float(v), 4) for v in weights]
    meta["commands"].append(command)
    if d.world > 1:
        meta.setdefault("world_sizes", []).append(d.world)
    start = meta["step"]
    end = stop_after if stop_after is not None else o.steps
    torch.manual_seed(o.seed)
    step_module: nn.Module = _Step(model)
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # a step of one task uses its gates and head alone: the others get no gradient
        step_module = DistributedDataParallel(
            step_module, find_unused_parameters=o.tasks == "sample"
        )

    bar = tqdm(
        total=o.steps,
        initial=start,
        desc=f"train {cfg.name}",
        disable=not progress or not d.lead,
        file=sys.stderr,
        mininterval=2.0 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )
    t_run = time.perf_counter()
    ema = None
    try:
        for step in range(start, end):
            lr = lr_at(step, o)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_mult"]
            idx = _train_indices(step, o, source)[d.rank * local : (d.rank + 1) * local]
            batch = source.batch("train", idx)
            x = normalize(batch.images, cfg).to(d.device)
            opt.zero_grad(set_to_none=True)
            step_tasks = _tasks_of_step(step, cfg, o, source)
            tap.clear()
            outs = step_module(x, step_tasks)
            parts = []
            counts = []
            for task, out_t in zip(step_tasks, outs, strict=True):
                label = torch.from_numpy(batch.labels[task]).to(d.device)
                part, n = task_loss_sum(out_t, label, task, o, weights)
                parts.append(part)
                counts.append(float(n))
            counts = _all_sum(counts, d)
            # each rank's share of the global mean; DDP averages the gradients over ranks
            total = sum(
                (p * (d.world / max(n, 1.0)) for p, n in zip(parts, counts, strict=True)),
                torch.zeros((), device=d.device),
            )
            if o.balance > 0 and tap.logits:
                k = len(step_tasks)
                per_task = len(tap.logits) // k
                for i in range(k):
                    part = slice(i * per_task, (i + 1) * per_task)
                    total = total + o.balance * tap.balance_loss(part)
            if not torch.isfinite(total.detach()):
                raise EdgeMoeError(f"training diverged at step {step} (loss {float(total)})")
            total.backward()
            if o.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip)
            opt.step()
            value = _all_sum([total.item()], d)[0] / d.world
            meta["losses"].append([step, "+".join(step_tasks), value])
            if d.world > 1:
                meta.setdefault("rank_drift", []).append(_rank_drift(model, d))
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            meta["step"] = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr:.1e}", refresh=False)
            if (step + 1) % o.eval_every == 0 or step + 1 == o.steps:
                if d.lead:
                    model.eval()
                    m = _short(evaluate(model, heldout, o.eval_images, o.batch))
                    model.train()
                    meta["evals"].append({"step": step + 1, **m})
                    bar.write(f"step {step + 1}: loss {ema:.4f} held-out {m}", file=sys.stderr)
                    meta["wall_seconds"] += time.perf_counter() - t_run
                    t_run = time.perf_counter()
                    _save_state(paths, model, opt, names, meta)
                _barrier(d)
    finally:
        bar.close()
        tap.remove()
    meta["wall_seconds"] += time.perf_counter() - t_run
    if not d.lead:
        _barrier(d)  # rank 0 writes the files
        _finish(d)
        import json

        return {**json.loads(paths["record"].read_text()), "rank": d.rank}
    _save_state(paths, model, opt, names, meta)

    # the shipped artefact: fp16 weights, evaluated as shipped
    model.eval()
    save_weights(model, paths["weights"])
    n_params = sum(p.numel() for p in model.parameters())
    record = _record(cfg, o, meta, paths, threads, end == o.steps, n_params)
    if record["complete"]:
        shipped = M3ViT(cfg, seed=o.seed)
        load_weights(shipped, paths["weights"])
        record["heldout"] = evaluate(shipped.eval(), heldout, o.final_eval_images, o.batch)
        record["heldout_images"] = min(o.final_eval_images, heldout.size("val") or 10**9)
    write_json_atomic(paths["record"], record)
    _barrier(d)
    _finish(d)
    return {**record, "rank": d.rank}


def _finish(d: _Dist) -> None:
    """Leave the process group (a plain run has none)."""
    if d.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def _barrier(d: _Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _has_head(init: str, prefix: str) -> bool:
    """Whether the ``init`` checkpoint (a project ``.safetensors``) holds ``prefix`` tensors."""
    if not init or not init.endswith(".safetensors"):
        return False
    return any(k.startswith(prefix) for k in read_tensors(init))


def _record(
    cfg: ModelConfig,
    o: TrainOptions,
    meta: dict[str, Any],
    paths: dict[str, Path],
    threads: int,
    complete: bool,
    n_params: int,
) -> dict[str, Any]:
    steps_done = meta["step"]
    wall = meta["wall_seconds"]
    return {
        "config": cfg.name,
        "config_fields": cfg.to_dict(),
        "complete": complete and steps_done == o.steps,
        "steps": steps_done,
        "options": asdict(o),
        "seed": o.seed,
        "data": o.data,
        "heldout_data": (
            f"procedural val split, data seed {HELDOUT_SEED}" if o.data == PROCEDURAL else o.data
        ),
        "threads": threads,
        "wall_seconds": round(wall, 1),
        "seconds_per_step": round(wall / max(steps_done, 1), 3),
        "commands": meta["commands"],
        "replans": meta.get("replans", []),
        "world_sizes": meta.get("world_sizes", [1]),
        "init": o.init,
        "class_weights": meta.get("class_weights"),
        "init_notices": meta.get("init_notices", []),
        "rank_drift_max": max(meta.get("rank_drift", [0.0])),
        "loss_curve": _curve_summary(meta["losses"], max(1, o.steps // 50)),
        "evals": meta["evals"],
        "weights": paths["weights"].name,
        "weights_dtype": "float16",
        "weights_bytes": paths["weights"].stat().st_size,
        "parameters": n_params,
        "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}",
    }
