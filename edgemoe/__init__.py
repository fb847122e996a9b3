"""edgemoe: an FPGA accelerator for the multi-task MoE ViT M3ViT.

The Python API (:mod:`edgemoe.api`) in one import (from the repository root)::

    import edgemoe

    m = edgemoe.load("m3vit-tiny-128x256")  # the config's shipped trained weights
    out = m.run("samples/street.png", tasks=["semseg", "depth"], backend="csim")
    out["semseg"].labels

Subpackages: :mod:`edgemoe.models` (float reference), :mod:`edgemoe.host`
(fixed-point contracts, export, driver, CLI) and :mod:`edgemoe.sim` (golden
model, C-sim, virtual board). Names are imported on first use, so importing
``edgemoe`` (or ``edgemoe.errors``) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load": "api",
    "backends": "api",
    "Model": "api",
    "Result": "api",
    "TaskOutput": "api",
    "EdgeMoeError": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
