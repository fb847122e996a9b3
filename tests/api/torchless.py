"""A board-only environment for subprocesses: torch and onnxruntime cannot be imported.

:func:`torchless_env` writes a ``sitecustomize`` that puts a finder first on
``sys.meta_path`` refusing those packages (and their submodules) with ImportError,
as in an install of ``pip install -e .`` without the ``full`` extra; a child
Python (a command, a notebook kernel) started with the returned environment has
it from its first import on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BLOCKED = ("torch", "onnxruntime", "onnx", "onnxscript", "safetensors")

SITECUSTOMIZE = '''
import importlib.machinery
import sys

BLOCKED = {blocked!r}
HIDDEN = {hidden!r}

class _Blocked:
    """The board has none of BLOCKED; HIDDEN is found without files (nothing to locate)."""

    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (blocked: a board-only install)")
        if top in HIDDEN:
            return importlib.machinery.ModuleSpec(name, None)
        return None

sys.meta_path.insert(0, _Blocked())
'''


def torchless_env(tmp_path: Path, hidden: tuple[str, ...] = ()) -> dict[str, str]:
    """``os.environ`` with a ``PYTHONPATH`` whose ``sitecustomize`` blocks :data:`BLOCKED`
    (and leaves the packages ``hidden`` without files: hls4ml's copy of the HLS headers)."""
    site = tmp_path / "torchless-site"
    site.mkdir(exist_ok=True)
    text = SITECUSTOMIZE.format(blocked=BLOCKED, hidden=hidden)
    (site / "sitecustomize.py").write_text(text)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return env


def run_python(code: str, env: dict[str, str]) -> list[str]:
    """Run ``code`` in a child Python with ``env`` (:func:`torchless_env`); it must exit 0.
    Returns its stdout lines."""
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    return child.stdout.strip().splitlines()
