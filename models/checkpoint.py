"""Load M3ViT checkpoints: plain, wrapped, ``module.``-prefixed, or split per rank.

M3ViT trains with FastMoE's expert parallelism, so a checkpoint may be one file
per rank, each holding ``E / world_size`` experts of every MoE block and a copy
of everything else (DESIGN.md §2.3). Every problem is reported as a one-line
:class:`~edgemoe.errors.CheckpointError` naming the offending keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from edgemoe.errors import CheckpointError

StateDict = dict[str, Tensor]

_EXPERT_KEY = re.compile(r"(^|\.)experts\.(htoh4|h4toh)\.(weight|bias)$")
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_RANK = re.compile(r"rank(\d+)")
_WRAPPER_KEYS = ("state_dict", "model")
_MAX_LISTED = 5


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
        return f"holds a {m.group(1)} object, which weights-only loading refuses"
    first = _one_line(e)
    why = f"{type(e).__name__}: {first}" if len(first) <= 80 else type(e).__name__
    return f"not a PyTorch checkpoint ({why})"


def is_expert_key(key: str) -> bool:
    """Whether ``key`` is an expert tensor (split across ranks along dim 0)."""
    return _EXPERT_KEY.search(key) is not None


def _unwrap(obj: Any, source: str) -> StateDict:
    """The state dict inside a checkpoint object, ``module.`` prefixes stripped."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source} is not a checkpoint: expected a state dict of tensors")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source} is not a state dict: non-tensor entries {_listing(bad)}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _read_safetensors(path: Path) -> StateDict:
    """A ``.safetensors`` weight file, or a training state (weights under ``model.``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a safetensors file ({_one_line(e)})") from None
    if any(k.startswith("model.") for k in tensors):
        tensors = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    return _unwrap({k: v.float() for k, v in tensors.items()}, str(path))


def _read_file(path: Path) -> StateDict:
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    except Exception as e:  # torch.load raises many kinds on non-checkpoint bytes
        raise CheckpointError(f"{path}: {_load_failure(e)}") from None
    return _unwrap(obj, str(path))


def _read_shards(directory: Path) -> tuple[StateDict, int]:
    """Merge per-rank files of ``directory``; returns the state dict and the world size."""
    ranked: dict[int, Path] = {}
    for f in sorted(directory.iterdir()):
        m = _RANK.search(f.name)
        if f.is_file() and m:
            r = int(m.group(1))
            if r in ranked:
                raise CheckpointError(
                    f"{directory}: two shards for rank {r}: {ranked[r].name}, {f.name}"
                )
            ranked[r] = f
    if not ranked:
        raise CheckpointError(f"{directory}: no per-rank checkpoint files (names with 'rank<r>')")
    world = len(ranked)
    if sorted(ranked) != list(range(world)):
        missing = sorted(set(range(max(ranked) + 1)) - set(ranked))
        raise CheckpointError(
            f"{directory}: missing shard(s) for rank {_listing(map(str, missing))}"
        )
    shards = [_read_file(ranked[r]) for r in range(world)]
    keys = list(shards[0])
    for r, shard in enumerate(shards[1:], start=1):
        only0 = [k for k in keys if k not in shard]
        only_r = [k for k in shard if k not in shards[0]]
        if only0 or only_r:
            diff = [f"{k} (rank 0 only)" for k in only0] + [f"{k} (rank {r} only)" for k in only_r]
            raise CheckpointError(f"{directory}: shards disagree on keys: {_listing(diff)}")
    merged: StateDict = {}
    differ: list[str] = []
    for k in keys:
        parts = [s[k] for s in shards]
        if is_expert_key(k):
            if len({p.shape[1:] for p in parts}) != 1:
                differ.append(k)
                continue
            merged[k] = torch.cat(parts, dim=0)
        else:
            if not all(p.shape == parts[0].shape and torch.equal(p, parts[0]) for p in parts):
                differ.append(k)
            merged[k] = parts[0]
    if differ:
        raise CheckpointError(
            f"{directory}: shards disagree on non-expert tensor(s) {_listing(differ)}"
        )
    return merged, world


def read_state_dict(source: str | Path | Mapping[str, Any]) -> tuple[StateDict, list[str]]:
    """Read a checkpoint into one flat state dict (no check against a model).

    Parameters
    ----------
    source : str, pathlib.Path or mapping
        A ``.pt``/``.pth`` file, a directory of per-rank shards, or an in-memory
        (possibly wrapped) state dict.

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
    notices: list[str] = []
    if isinstance(source, Mapping):
        return _unwrap(source, "checkpoint"), notices
    path = Path(source)
    if path.is_dir():
        sd, world = _read_shards(path)
        notices.append(f"merged experts of {world} rank shard(s) from {path}")
        return sd, notices
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    return _read_file(path), notices


def _strip_backbone_prefix(sd: StateDict, expected: set[str], notices: list[str]) -> StateDict:
    """Strip ``backbone.`` when every backbone key carries it (M3ViT's multi-task wrapper)."""
    backbone = {k for k in expected if not k.startswith("heads.")}
    if backbone & set(sd) or not all(f"backbone.{k}" in sd for k in backbone):
        return sd
    out: StateDict = {}
    ignored: list[str] = []
    for k, v in sd.items():
        if k.startswith("backbone."):
            out[k.removeprefix("backbone.")] = v
        elif k in expected:
            out[k] = v
        else:
            ignored.append(k)
    notices.append("stripped the 'backbone.' prefix")
    if ignored:
        notices.append(f"ignored {len(ignored)} non-backbone key(s): {_listing(ignored)}")
    return out


def load_checkpoint(
    model: nn.Module, source: str | Path | Mapping[str, Any], *, strict_heads: bool = False
) -> list[str]:
    """Load an M3ViT checkpoint into ``model`` after checking every tensor.

    Parameters
    ----------
    model : torch.nn.Module
        Usually an :class:`~edgemoe.models.m3vit.M3ViT`; loaded in place.
    source : str, pathlib.Path or mapping
        A file holding a state dict (plain, or under ``'state_dict'``/``'model'``,
        keys optionally prefixed by ``module.`` and ``backbone.``), a directory of
        per-rank shards (file names containing ``rank<r>``; experts concatenated
        in rank order), or such a dict in memory.
    strict_heads : bool
        Fail when the light task heads (``heads.*``) are missing. By default they
        keep their current values and a notice says so: M3ViT checkpoints do not
        have them.

    Returns
    -------
    list[str]
        Notices for the user (prefixes stripped, shards merged, heads kept).

    Raises
    ------
    CheckpointError
        Unreadable source; missing, unexpected or misshaped keys; NaN or Inf
        values; shards that disagree.
    """
    sd, notices = read_state_dict(source)
    target = model.state_dict()
    expected = set(target)
    sd = _strip_backbone_prefix(sd, expected, notices)

    missing = [k for k in target if k not in sd]
    missing_heads = [k for k in missing if k.startswith("heads.")]
    missing_backbone = [k for k in missing if not k.startswith("heads.")]
    if missing_backbone or (strict_heads and missing_heads):
        keys = missing_backbone + (missing_heads if strict_heads else [])
        raise CheckpointError(f"checkpoint lacks {len(keys)} key(s): {_listing(keys)}")
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

    with torch.no_grad():
        model.load_state_dict(sd, strict=False)
    if missing_heads:
        tasks = sorted({k.split(".")[1] for k in missing_heads})
        notices.append(
            f"no light head for task(s) {', '.join(tasks)} in the checkpoint: "
            "left at their initial values"
        )
    return notices


def save_sharded(
    state_dict: Mapping[str, Tensor],
    directory: str | Path,
    world_size: int,
    *,
    prefix: str = "module.",
    stem: str = "checkpoint",
) -> list[Path]:
    """Write ``state_dict`` as per-rank shards, the way FastMoE's expert parallelism does.

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
