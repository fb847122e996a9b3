"""A board-only environment for subprocesses: torch and onnxruntime cannot be imported.

:func:`torchless_env` writes a ``sitecustomize`` that puts a finder first on
``sys.meta_path`` refusing those packages (and their submodules) with ImportError,
as in an install of ``pip install -e .`` without the ``full`` extra; a child
Python (a command, a notebook kernel) started with the returned environment has
it from its first import on.
"""

from __future__ import annotations

import os
from pathlib import Path

BLOCKED = ("torch", "onnxruntime", "onnx", "onnxscript", "safetensors")

SITECUSTOMIZE = f'''
import sys

class _Blocked:
    """The board has no {", ".join(BLOCKED)}."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"No module named {{name!r}} (blocked: a board-only install)")
        return None

sys.meta_path.insert(0, _Blocked())
'''


def torchless_env(tmp_path: Path) -> dict[str, str]:
    """``os.environ`` with a ``PYTHONPATH`` whose ``sitecustomize`` blocks :data:`BLOCKED`."""
    site = tmp_path / "torchless-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return env
