"""Load M3ViT checkpoints as M3ViT's training writes them, and the project's own.

Accepted sources (docs/configs.md):

- a directory of per-rank files, as FastMoE's expert parallelism and M3ViT's
  ``save_moe_model_to_dir`` write them (``best_model.pth.tar/0.pth … {W-1}.pth``;
  any name with a rank index: ``3.pth``, ``checkpoint_rank3.pth``). Rank 0 holds
  every tensor and its ``E / W`` experts of each MoE block; ranks > 0 hold only
  their experts (or, as :func:`save_sharded` writes, full copies that must agree
  with rank 0). Experts are concatenated in rank order; the world size is the
  number of rank files;
- one file: a state dict, or a training record ``{'state_dict' | 'model': …,
  'epoch', 'backbone', 'best_result', 'optimizer', …}`` (rank 0 of a run alone
  is such a file);
- a ``.safetensors`` file (the project's parameter names, any float dtype);
- such a dict in memory.

Keys are normalised one by one: ``module.`` then ``backbone.`` stripped;
``decoders.{task}.norm`` becomes the task's final norm ``norms.{task}``. For a
task whose config head is ``pup`` (M3ViT's ``VisionTransformerUpHead``),
``decoders.{task}.conv_{i}.*`` and ``decoders.{task}.syncbn_fc_{i}.*`` (batch-norm
statistics included) fill its decoder, and a decoder of another shape fails naming
the config field and both values; ``num_batches_tracked``, the training-only
``decoders.{task}.output_level_*`` (multi-level supervision) and ``tam_model*`` are
ignored. For a ``linear`` task every ``decoders.*`` tensor but the norm is
ignored. The record's other entries are ignored too (one notice lists them all).
A task whose head or decoder is absent altogether is *untrained*:
:func:`load_checkpoint_result` names such tasks (or refuses them with
``strict_heads``). Gates may be the project's ``gate.{task}``,
M3ViT's ``gate.{k}`` (``k`` = the task's position in :data:`M3VIT_TASK_ORDER`
restricted to the config's tasks, or in the config's ``gate_order``), or one
shared ``gate.w_gate`` loaded as every task's gate. Task-conditioned gates,
noisy gates (``w_noise``) and gates whose input is not ``embed_dim`` wide are
refused. Every problem is one line, a :class:`~edgemoe.errors.CheckpointError`.

Unpickling is weights-only: besides tensors and containers, only the numpy
scalar and dtype globals that M3ViT's ``best_result`` needs are allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edgemoe.errors import CheckpointError

from .config import ModelConfig

StateDict = dict[str, Tensor]

#: M3ViT's fixed task order; per-task gate ``k`` belongs to the k-th trained task in it.
M3VIT_TASK_ORDER = ("semseg", "human_parts", "sal", "normals", "edge", "depth")

_EXPERT_KEY = re.compile(r"(^|\.)experts\.(htoh4|h4toh)\.(weight|bias)$")
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_RANK_NAMED = re.compile(r"rank[_-]?(\d+)")
_TRAILING_INT = re.compile(r"(\d+)$")
_SHARD_SUFFIXES = (".pth", ".pt", ".tar", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model")
_DECODER_NORM = re.compile(r"^decoders\.(\w+)\.norm\.(weight|bias)$")
_DECODER_PART = re.compile(r"^decoders\.(\w+)\.((?:conv|syncbn_fc)_\d+)\.(\w+)$")
_TRAINING_ONLY = re.compile(
    r"^decoders\.(\w+)\.(output_level_\d+\.\w+|syncbn_fc_\d+\.num_batches_tracked)$"
)
_GATE = re.compile(r"^blocks\.(\d+)\.mlp\.gate\.(?:(\w+)\.)?w_gate$")
_NOISE = re.compile(r"^blocks\.\d+\.mlp\.gate\.(?:\w+\.)?w_noise$")
_MAX_LISTED = 5


def _numpy_globals() -> list[Any]:
    """Exactly what pickled numpy scalars need: ``scalar`` (both module names), dtypes.

    numpy 1.x pickles scalars as ``numpy.core.multiarray.scalar``, numpy 2 as
    ``numpy._core.multiarray.scalar``; a dtype is rebuilt through ``numpy.dtype``
    and then its concrete class (``numpy.dtypes.Float64DType`` …) gets its state.
    """
    scalar = np._core.multiarray.scalar
    allowed: list[Any] = [
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
    ]
    allowed += sorted({type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDG"}, key=str)
    return allowed


_NUMPY_GLOBALS = _numpy_globals()


@dataclass
class _Record:
    """One file's tensors (``module.`` stripped) and the names of its other entries."""

    tensors: StateDict
    extras: list[str] = field(default_factory=list)


def _listing(items: Iterable[str]) -> str:
    """``a, b, c`` with at most a few items shown, then ``… and N more``."""
    items = list(items)
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown} … and {more} more" if more > 0 else shown


def _one_line(text: str) -> str:
    lines = [s.strip() for s in str(text).splitlines() if s.strip()]
    return lines[0] if lines else "unknown error"


def _load_failure(e: Exception) -> str:
    """The useful part of a ``torch.load`` failure (its messages run to paragraphs)."""
    m = _UNSAFE_GLOBAL.search(str(e))
    if m:
        return (
            f"holds a {m.group(1)} object, which weights-only loading refuses "
            "(only tensors, containers and numpy scalars are allowed)"
        )
    first = _one_line(e)
    why = f"{type(e).__name__}: {first}" if len(first) <= 80 else type(e).__name__
    return f"not a PyTorch checkpoint ({why})"


def is_expert_key(key: str) -> bool:
    """Whether ``key`` is an expert tensor (split across ranks along dim 0)."""
    return _EXPERT_KEY.search(key) is not None


def _strip_module(key: str) -> str:
    while key.startswith("module."):
        key = key.removeprefix("module.")
    return key


def _unwrap(obj: Any, source: str) -> _Record:
    """The state dict inside a checkpoint object, ``module.`` prefixes stripped per key."""
    extras: list[str] = []
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                extras = [str(k) for k in obj if k != key]
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source} is not a checkpoint: expected a state dict of tensors")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source} is not a state dict: non-tensor entries {_listing(bad)}")
    tensors: StateDict = {}
    for k, v in obj.items():
        name = _strip_module(k)
        if name in tensors:
            raise CheckpointError(f"{source}: key {name} appears with and without 'module.'")
        tensors[name] = v
    return _Record(tensors, extras)


def _read_safetensors(path: Path) -> _Record:
    """A ``.safetensors`` weight file, or a training state (weights under ``model.``)."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except Exception as e:  # safetensors raises its own error type on bad bytes
        raise CheckpointError(f"{path}: not a safetensors file ({_one_line(e)[:80]})") from None
    if any(k.startswith("model.") for k in tensors):
        tensors = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    return _Record(tensors)


def _read_file(path: Path) -> _Record:
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    except Exception as e:  # torch.load raises many kinds on non-checkpoint bytes
        raise CheckpointError(f"{path}: {_load_failure(e)}") from None
    return _unwrap(obj, str(path))


def _rank_of(path: Path) -> int | None:
    """The rank index in a shard's file name (``3.pth``, ``ckpt_rank3.pt``), else None."""
    name = path.name
    stem = name
    while any(stem.endswith(s) for s in _SHARD_SUFFIXES):
        stem = stem.rsplit(".", 1)[0]
    if stem == name:
        return None  # not a checkpoint file name
    m = _RANK_NAMED.search(stem) or _TRAILING_INT.search(stem)
    return int(m.group(1)) if m else None


def _read_shards(directory: Path, num_experts: int | None) -> tuple[_Record, int, list[str]]:
    """Merge the per-rank files of ``directory``: the record, the world size, notices."""
    ranked: dict[int, Path] = {}
    skipped: list[str] = []
    for f in sorted(directory.iterdir()):
        r = _rank_of(f) if f.is_file() else None
        if r is None:
            skipped.append(f.name)
            continue
        if r in ranked:
            raise CheckpointError(
                f"{directory}: two shards for rank {r}: {ranked[r].name}, {f.name}"
            )
        ranked[r] = f
    if not ranked:
        raise CheckpointError(
            f"{directory}: no per-rank checkpoint files (names with a rank index, "
            "e.g. 0.pth or checkpoint_rank0.pth)"
        )
    world = max(ranked) + 1
    if len(ranked) != world:
        missing = [str(r) for r in range(world) if r not in ranked]
        raise CheckpointError(
            f"{directory}: missing shard(s) for rank {_listing(missing)} "
            f"(found ranks {_listing(map(str, sorted(ranked)))})"
        )
    if num_experts is not None and num_experts % world:
        raise CheckpointError(
            f"{directory}: {world} rank files, but num_experts={num_experts} of the config "
            f"does not divide by {world} (each rank holds E / world_size experts)"
        )
    records = [_read_file(ranked[r]) for r in range(world)]
    base = records[0].tensors
    experts = [k for k in base if is_expert_key(k)]
    merged: StateDict = dict(base)
    differ: list[str] = []
    for r, rec in enumerate(records[1:], start=1):
        lacking = [k for k in experts if k not in rec.tensors]
        extra = [k for k in rec.tensors if is_expert_key(k) and k not in base]
        if lacking or extra:
            diff = [f"{k} (rank 0 only)" for k in lacking] + [f"{k} (rank {r} only)" for k in extra]
            raise CheckpointError(f"{directory}: shards disagree on expert keys: {_listing(diff)}")
        for k, v in rec.tensors.items():
            if is_expert_key(k):
                continue
            # ranks > 0 hold only experts in M3ViT; full copies must equal rank 0's
            ref = base.get(k)
            if ref is None:
                differ.append(f"{k} (rank {r} only)")
            elif v.shape != ref.shape or not torch.equal(v, ref):
                differ.append(k)
    if differ:
        raise CheckpointError(
            f"{directory}: shards disagree on non-expert tensor(s) {_listing(differ)}"
        )
    for k in experts:
        parts = [rec.tensors[k] for rec in records]
        counts = [p.shape[0] if p.ndim else 0 for p in parts]
        if len(set(counts)) != 1:
            raise CheckpointError(
                f"{directory}: {k}: ranks hold {', '.join(map(str, counts))} experts; "
                "expert parallelism gives every rank the same number"
            )
        if len({p.shape[1:] for p in parts}) != 1:
            raise CheckpointError(f"{directory}: {k}: expert shapes differ between ranks")
        merged[k] = torch.cat(parts, dim=0)
    notices = []
    if skipped:
        notices.append(f"{directory}: skipped file(s) without a rank index: {_listing(skipped)}")
    return _Record(merged, records[0].extras), world, notices


def _read(
    source: str | Path | Mapping[str, Any], num_experts: int | None
) -> tuple[_Record, list[str]]:
    if isinstance(source, Mapping):
        return _unwrap(source, "checkpoint"), []
    path = Path(source)
    if path.is_dir():
        rec, world, notices = _read_shards(path, num_experts)
        notices.append(
            f"merged the experts of {world} rank file(s) from {path} (world size {world})"
        )
        return rec, notices
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    return _read_file(path), []


def read_state_dict(
    source: str | Path | Mapping[str, Any], *, num_experts: int | None = None
) -> tuple[StateDict, list[str]]:
    """Read a checkpoint into one flat state dict (no check against a model).

    Parameters
    ----------
    source : str, pathlib.Path or mapping
        A ``.pt``/``.pth``/``.safetensors`` file, a directory of per-rank files,
        or an in-memory (possibly wrapped) state dict.
    num_experts : int, optional
        Experts per MoE block the model expects; a rank directory whose world
        size does not divide it is refused.

    Returns
    -------
    state_dict : dict[str, torch.Tensor]
        Keys with any ``module.`` prefix stripped, experts merged across ranks.
    notices : list[str]
        What was done to the checkpoint, for the user.

    Raises
    ------
    CheckpointError
        The source is missing, unreadable, not a checkpoint, or its shards disagree.
    """
    rec, notices = _read(source, num_experts)
    return rec.tensors, notices


def _group(key: str) -> str:
    """A readable group name of an ignored key: ``decoders.semseg.*``, ``tam_model*``."""
    parts = key.split(".")
    if parts[0] == "decoders" and len(parts) > 3 and parts[2].startswith("output_level_"):
        return f"decoders.{parts[1]}.output_level_*"
    if parts[0] == "decoders" and len(parts) > 3 and parts[-1] == "num_batches_tracked":
        return f"decoders.{parts[1]}.*.num_batches_tracked"
    if parts[0] == "decoders" and len(parts) > 2:
        return f"decoders.{parts[1]}.*"
    if parts[0].startswith("tam_model"):
        return "tam_model*"
    if parts[0] == "heads" and len(parts) > 2:
        return f"heads.{parts[1]}.* (a light head; the config's head is pup)"
    return f"{parts[0]}.*" if len(parts) > 1 else key


def _gate_order(cfg: ModelConfig) -> tuple[str, ...]:
    """Task of each gate index: ``cfg.gate_order``, else M3ViT's order (others after it)."""
    if cfg.gate_order is not None:
        return cfg.gate_order
    known = [t for t in M3VIT_TASK_ORDER if t in cfg.task_names]
    return (*known, *(t for t in cfg.task_names if t not in M3VIT_TASK_ORDER))


def _to_project_names(
    sd: StateDict, extras: list[str], cfg: ModelConfig | None
) -> tuple[StateDict, list[str]]:
    """Rename M3ViT's keys to the project's; returns the state dict and notices."""
    out: StateDict = {}
    ignored: dict[str, int] = {e: 0 for e in extras}
    indexed: dict[int, dict[int, Tensor]] = {}  # block -> gate index -> w_gate
    shared: dict[int, Tensor] = {}
    single_norm: dict[str, Tensor] = {}
    conditioned = [k for k in sd if "gate_task_represent" in k]
    if conditioned:
        raise CheckpointError(
            f"task-conditioned gate (M3ViT's --task_one_hot: {conditioned[0]}, gate input "
            "embed_dim + 64) is not supported: the accelerator gates each task on the token alone"
        )
    noisy = [k for k in sd if _NOISE.match(k.removeprefix("backbone."))]
    if noisy:
        raise CheckpointError(
            f"noisy gate ({noisy[0]}: an old checkpoint with w_noise) is not supported; "
            "the accelerator's gate is w_gate alone"
        )

    def put(name: str, v: Tensor, original: str) -> None:
        if name in out:
            raise CheckpointError(f"checkpoint holds {name} twice (as {original} too)")
        out[name] = v

    pup = {s.name for s in cfg.task_specs if s.head.kind == "pup"} if cfg is not None else set()
    for key, v in sd.items():
        k = key.removeprefix("backbone.")
        m = _DECODER_NORM.match(k)
        d = _DECODER_PART.match(k)
        if m:
            put(f"norms.{m.group(1)}.{m.group(2)}", v, key)
        elif d and d.group(1) in pup and not _TRAINING_ONLY.match(k):
            put(k, v, key)
        elif k.startswith("heads.") and k.split(".")[1] in pup:
            # a light head where the config has M3ViT's decoder
            ignored[_group(k)] = ignored.get(_group(k), 0) + 1
        elif k.startswith("decoders.") or k.startswith("tam_model"):
            ignored[_group(k)] = ignored.get(_group(k), 0) + 1
        elif k in ("norm.weight", "norm.bias"):
            single_norm[k.removeprefix("norm.")] = v
        elif (g := _GATE.match(k)) and cfg is not None:
            block, which = int(g.group(1)), g.group(2)
            if which is None:
                shared[block] = v
            elif which.isdigit():
                indexed.setdefault(block, {})[int(which)] = v
            else:
                put(k, v, key)
        else:
            put(k, v, key)

    notices: list[str] = []
    if cfg is not None:
        gates = [v for d in indexed.values() for v in d.values()] + list(shared.values())
        gate_keys = [k for k in out if _GATE.match(k)]
        for w in gates + [out[k] for k in gate_keys]:
            if w.ndim == 2 and w.shape[0] != cfg.embed_dim:
                variant = (
                    "a task-conditioned gate (input embed_dim + 64)"
                    if w.shape[0] == cfg.embed_dim + 64
                    else "an unsupported gate variant"
                )
                raise CheckpointError(
                    f"gate input width {w.shape[0]} != embed_dim {cfg.embed_dim}: {variant} "
                    "is not supported"
                )
        if indexed:
            order = _gate_order(cfg)
            for block, by_index in sorted(indexed.items()):
                if sorted(by_index) != list(range(len(order))):
                    raise CheckpointError(
                        f"block {block} has per-task gates {_listing(map(str, sorted(by_index)))}"
                        f", but config {cfg.name} has {len(order)} task(s) "
                        f"({', '.join(order)}): field 'tasks' or 'gate_order' differs"
                    )
                for i, t in enumerate(order):
                    put(f"blocks.{block}.mlp.gate.{t}.w_gate", by_index[i], f"gate.{i}")
            mapping = ", ".join(f"{i} -> {t}" for i, t in enumerate(order))
            why = "the config's gate_order" if cfg.gate_order else "M3ViT's task order"
            notices.append(f"per-task gates by index mapped to tasks ({why}): {mapping}")
        if shared:
            for block, w in sorted(shared.items()):
                for t in cfg.task_names:
                    put(f"blocks.{block}.mlp.gate.{t}.w_gate", w, "gate.w_gate")
            notices.append(
                "one shared gate per MoE block (mlp.gate.w_gate): loaded as the gate of "
                f"every task ({', '.join(cfg.task_names)})"
            )
        if single_norm:
            for t in cfg.task_names:
                for p, v in single_norm.items():
                    put(f"norms.{t}.{p}", v, f"norm.{p}")
            notices.append(
                "one final norm (norm.*): used as the final norm of every task "
                f"({', '.join(cfg.task_names)})"
            )
    else:
        for p, v in single_norm.items():
            put(f"norm.{p}", v, f"norm.{p}")
    if ignored:
        what = [
            f"{name} ({n} tensor{'s' * (n != 1)})" if n else name for name, n in ignored.items()
        ]
        notices.insert(
            0, "ignored what the accelerator and the task heads do not use: " + ", ".join(what)
        )
    return out, notices


def _check_decoders(sd: StateDict, cfg: ModelConfig) -> None:
    """A ``pup`` decoder of another shape fails naming the config field and both values."""
    for spec in cfg.task_specs:
        if spec.head.kind != "pup":
            continue
        pre = f"decoders.{spec.name}."
        field = f"tasks.{spec.name}.head"
        convs = sorted(
            int(m.group(1)) for k in sd if (m := re.fullmatch(rf"{pre}conv_(\d+)\.weight", k))
        )
        if not convs:
            continue  # no decoder: an untrained task
        h = spec.head
        got = 4 if len(convs) == 5 else len(convs)  # conv_0 … conv_4: M3ViT's num_conv 4
        _mismatch(cfg, f"{field}.num_conv", h.num_conv, got, f"{pre}conv_0 … conv_{convs[-1]}")
        for i in convs:
            w = sd[f"{pre}conv_{i}.weight"]
            where = f"{pre}conv_{i}.weight {tuple(w.shape)}"
            if w.ndim != 4:
                raise CheckpointError(f"checkpoint {where}: not a 2-D convolution")
            last = i == h.convs - 1
            if last:
                _mismatch(cfg, f"tasks.{spec.name}.channels", spec.channels, w.shape[0], where)
            else:
                _mismatch(cfg, f"{field}.channels", h.channels, w.shape[0], where)
            if i == 0:
                _mismatch(cfg, "embed_dim", cfg.embed_dim, w.shape[1], where)
                if h.num_conv == 2:
                    k = "true (3x3)" if w.shape[-1] == 3 else "false (1x1)"
                    want = "true (3x3)" if h.conv3x3_conv1x1 else "false (1x1)"
                    _mismatch(cfg, f"{field}.conv3x3_conv1x1", want, k, where)
            elif not last:
                _mismatch(cfg, f"{field}.channels", h.channels, w.shape[1], where)


def _mismatch(cfg: ModelConfig, field_name: str, want: Any, got: Any, where: str) -> None:
    if want != got:
        raise CheckpointError(
            f"checkpoint is of another config: {field_name} is {want} in {cfg.name}, "
            f"{got} in the checkpoint ({where})"
        )


def _check_config(sd: StateDict, cfg: ModelConfig) -> None:
    """Shapes that reveal a different model config fail naming the config field."""

    def shape(k: str) -> tuple[int, ...] | None:
        return tuple(sd[k].shape) if k in sd else None

    pe = shape("patch_embed.proj.weight")
    if pe is not None and len(pe) == 4:
        where = f"patch_embed.proj.weight {pe}"
        _mismatch(cfg, "embed_dim", cfg.embed_dim, pe[0], where)
        _mismatch(cfg, "in_chans", cfg.in_chans, pe[1], where)
        _mismatch(cfg, "patch_size", cfg.patch_size, pe[2], where)
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.norm1\.", k))})
    if blocks:
        _mismatch(cfg, "depth", cfg.depth, blocks[-1] + 1, f"blocks.0 … blocks.{blocks[-1]}")
    qkv = shape("blocks.0.attn.qkv.weight")
    if qkv is not None and len(qkv) == 2:
        # timm's fused qkv is (3 D, D): the head count is not stored, the width is
        where = f"blocks.0.attn.qkv.weight {qkv}"
        _mismatch(cfg, "embed_dim", cfg.embed_dim, qkv[1], where)
        _mismatch(cfg, "3 x embed_dim (q, k, v rows)", 3 * cfg.embed_dim, qkv[0], where)
    moe = sorted(
        {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.mlp\.experts\.", k))}
    )
    if moe:
        _mismatch(cfg, "moe_blocks", list(cfg.moe_blocks), moe, "blocks with mlp.experts")
    for k, v in sd.items():
        if re.fullmatch(r"blocks\.\d+\.mlp\.fc1\.weight", k) and v.ndim == 2:
            _mismatch(cfg, "mlp_hidden", cfg.mlp_hidden, v.shape[0], f"{k} {tuple(v.shape)}")
        elif re.fullmatch(r"blocks\.\d+\.mlp\.experts\.htoh4\.weight", k) and v.ndim == 3:
            where = f"{k} {tuple(v.shape)}"
            _mismatch(cfg, "num_experts", cfg.num_experts, v.shape[0], where)
            _mismatch(cfg, "expert_hidden", cfg.expert_hidden, v.shape[1], where)
        elif _GATE.match(k) and v.ndim == 2:
            _mismatch(cfg, "num_experts", cfg.num_experts, v.shape[1], f"{k} {tuple(v.shape)}")
    pos = shape("pos_embed")
    if pos is not None and len(pos) == 3:
        _mismatch(cfg, "image_size (tokens)", cfg.num_tokens, pos[1], f"pos_embed {pos}")


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load_checkpoint_result` did.

    Attributes
    ----------
    notices : list[str]
        One-line notices for the user.
    untrained : tuple[str, ...]
        Tasks, in config order, whose head (``heads.{task}``) or decoder
        (``decoders.{task}``) the checkpoint lacks: left at their initial values.
        Outputs of these tasks are not results; callers refuse them unless asked.
    """

    notices: list[str]
    untrained: tuple[str, ...] = ()


def _head_prefixes(cfg: ModelConfig | None, keys: Iterable[str]) -> dict[str, str]:
    """Task of each head parameter prefix: ``heads.{t}.`` or ``decoders.{t}.``."""
    if cfg is not None:
        return {
            (f"heads.{s.name}." if s.head.kind == "linear" else f"decoders.{s.name}."): s.name
            for s in cfg.task_specs
        }
    return {
        f"{k.split('.')[0]}.{k.split('.')[1]}.": k.split(".")[1]
        for k in keys
        if k.startswith(("heads.", "decoders."))
    }


def load_checkpoint(
    model: nn.Module, source: str | Path | Mapping[str, Any], *, strict_heads: bool = False
) -> list[str]:
    """:func:`load_checkpoint_result`'s notices (same arguments and errors)."""
    return load_checkpoint_result(model, source, strict_heads=strict_heads).notices


def load_checkpoint_result(
    model: nn.Module, source: str | Path | Mapping[str, Any], *, strict_heads: bool = False
) -> LoadResult:
    """Load an M3ViT checkpoint (or the project's own) into ``model`` after checking it.

    Parameters
    ----------
    model : torch.nn.Module
        Usually an :class:`~edgemoe.models.m3vit.M3ViT` (its ``cfg`` drives the
        gate mapping and the config checks); loaded in place, only when every
        check passes.
    source : str, pathlib.Path or mapping
        A file (``.pth``/``.pt``: a state dict or a training record; or
        ``.safetensors``), a directory of per-rank files, or a dict in memory.
        See the module docstring for the layouts and what is ignored.
    strict_heads : bool
        Fail when a task's head (``heads.{task}.*``, ``linear``) or decoder
        (``decoders.{task}.*``, ``pup``) is missing. By default it keeps its
        current values, a notice says so and the task is listed as untrained.

    Returns
    -------
    LoadResult
        One-line notices for the user (what was ignored, how gates and norms were
        mapped, shards merged, heads kept, dtypes converted) and the untrained tasks.

    Raises
    ------
    CheckpointError
        Unreadable source; another config's shapes; a refused gate variant;
        missing, unexpected or misshaped keys; NaN or Inf values; shards that
        disagree.
    """
    cfg: ModelConfig | None = getattr(model, "cfg", None)
    rec, notices = _read(source, cfg.num_experts if cfg is not None else None)
    if cfg is not None:
        _check_config({k.removeprefix("backbone."): v for k, v in rec.tensors.items()}, cfg)
    sd, mapped = _to_project_names(rec.tensors, rec.extras, cfg)
    if cfg is not None:
        _check_decoders(sd, cfg)
    notices += mapped
    target = model.state_dict()
    expected = set(target)

    missing = [k for k in target if k not in sd]
    prefixes = _head_prefixes(cfg, target)
    # a task is untrained when its head is absent altogether; a partial head is an error
    absent = {
        t
        for p, t in prefixes.items()
        if not any(k.startswith(p) for k in sd) and strict_heads is False
    }
    missing_heads = [
        k for k in missing if any(k.startswith(p) and prefixes[p] in absent for p in prefixes)
    ]
    missing_backbone = [k for k in missing if k not in missing_heads]
    if missing_backbone:
        raise CheckpointError(
            f"checkpoint lacks {len(missing_backbone)} key(s): {_listing(missing_backbone)}"
        )
    unexpected = [k for k in sd if k not in expected]
    if unexpected:
        raise CheckpointError(
            f"checkpoint has {len(unexpected)} unexpected key(s): {_listing(unexpected)}"
        )
    misshaped = [
        f"{k} expected {tuple(target[k].shape)} got {tuple(v.shape)}"
        for k, v in sd.items()
        if v.shape != target[k].shape
    ]
    if misshaped:
        raise CheckpointError(f"checkpoint shape mismatch: {_listing(misshaped)}")
    not_float = [k for k, v in sd.items() if not v.is_floating_point()]
    if not_float:
        raise CheckpointError(f"checkpoint tensor(s) not floating point: {_listing(not_float)}")
    non_finite = []
    for k, v in sd.items():
        nan = int(torch.isnan(v).sum())
        inf = int(torch.isinf(v).sum())
        if nan or inf:
            what = [f"{n} {label}" for n, label in ((nan, "NaN"), (inf, "Inf")) if n]
            non_finite.append(f"{k} ({', '.join(what)})")
    if non_finite:
        raise CheckpointError(f"checkpoint has non-finite values in {_listing(non_finite)}")
    converted = sorted(
        {str(v.dtype).removeprefix("torch.") for k, v in sd.items() if v.dtype != target[k].dtype}
    )
    if converted:
        notices.append(
            f"converted {', '.join(converted)} tensors to "
            f"{str(next(iter(target.values())).dtype).removeprefix('torch.')}"
        )

    with torch.no_grad():
        model.load_state_dict(sd, strict=False)
    untrained: tuple[str, ...] = ()
    if missing_heads:
        names = cfg.task_names if cfg is not None else sorted(absent)
        untrained = tuple(t for t in names if t in absent)
        notices.append(
            f"no head for task(s) {', '.join(untrained)} in the checkpoint: "
            "left at their initial values (untrained)"
        )
    return LoadResult(notices, untrained)


def save_sharded(
    state_dict: Mapping[str, Tensor],
    directory: str | Path,
    world_size: int,
    *,
    prefix: str = "module.",
    stem: str = "checkpoint",
) -> list[Path]:
    """Write ``state_dict`` as per-rank shards, each a full copy with its own experts.

    Parameters
    ----------
    state_dict : mapping
        Full model state dict (all experts).
    directory : str or pathlib.Path
        Created if needed; receives ``{stem}_rank{r}.pth`` for each rank.
    world_size : int
        Number of ranks; must divide the number of experts.
    prefix : str
        Prepended to every key (DataParallel's ``module.`` by default).
    stem : str
        File name stem.

    Returns
    -------
    list[pathlib.Path]
        Shard files in rank order, each holding ``{'state_dict': ...}``.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[StateDict] = [{} for _ in range(world_size)]
    for k, v in state_dict.items():
        if is_expert_key(k):
            if v.shape[0] % world_size:
                raise ValueError(f"{k}: {v.shape[0]} experts do not split over {world_size} ranks")
            parts = torch.chunk(v, world_size, dim=0)
        else:
            parts = (v,) * world_size
        for r, part in enumerate(parts):
            # clone: a view would save the whole storage into every shard.
            shards[r][prefix + k] = part.detach().clone()
    paths = []
    for r, shard in enumerate(shards):
        path = out / f"{stem}_rank{r}.pth"
        torch.save({"state_dict": shard}, path)
        paths.append(path)
    return paths
