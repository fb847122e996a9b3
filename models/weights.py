"""The project's own weight files: ``.safetensors`` under the model's parameter names.

A trained checkpoint is shipped as fp16 ``{name}.safetensors`` beside a JSON
training record ``{name}.json`` in ``models/checkpoints/`` (package data), and is
loaded through :func:`edgemoe.models.checkpoint.load_checkpoint`'s checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from edgemoe.errors import CheckpointError
from edgemoe.files import write_file_atomic

from .checkpoint import load_checkpoint
from .shipped import CHECKPOINT_DIR, SUFFIX, read_record, shipped_checkpoint

__all__ = ["CHECKPOINT_DIR", "SUFFIX", "read_record", "shipped_checkpoint"]


def save_tensors(
    tensors: Mapping[str, Tensor], path: str | Path, metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` to a ``.safetensors`` file atomically (temporary file + rename)."""
    from safetensors.torch import save_file

    data = {k: v.detach().contiguous() for k, v in tensors.items()}
    write_file_atomic(path, lambda tmp: save_file(data, tmp, dict(metadata or {})))


def read_tensors(path: str | Path) -> dict[str, Tensor]:
    """Every tensor of a ``.safetensors`` file, as a one-line error if it is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a safetensors file ({first})") from None


def save_weights(model: nn.Module, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """Save ``model``'s parameters, cast to ``dtype`` (fp16: the shipped form)."""
    state = {k: v.detach().to("cpu", dtype) for k, v in model.state_dict().items()}
    save_tensors(state, path, {"format": "pt", "dtype": str(dtype).removeprefix("torch.")})


def load_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load a ``.safetensors`` file of the model's own parameter names into ``model``.

    Tensors are cast to the model's float32 and go through
    :func:`~edgemoe.models.checkpoint.load_checkpoint`'s checks (names, shapes,
    finite values; the task heads are required).

    Returns
    -------
    list[str]
        Notices for the user.
    """
    tensors = {k: v.to(torch.float32) for k, v in read_tensors(path).items()}
    return load_checkpoint(model, tensors, strict_heads=True)
