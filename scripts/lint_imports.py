"""Check the import-linter contracts of ``pyproject.toml`` on the package as installed.

The repository keeps ``host/``, ``sim/`` and ``models/`` at the top and maps them
into ``edgemoe`` with setuptools' ``package-dir``; import-linter (grimp) reads
a package from one folder, so this lays the Python files out as a wheel would
(``edgemoe/host/...``, from the same ``package-dir`` table) in a temporary
folder and runs ``lint-imports`` there. Exit status: lint-imports'.

    python scripts/lint_imports.py [--tree DIR]   # DIR: keep the staged tree there
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage(dest: Path, root: Path = ROOT) -> Path:
    """Copy every package's ``.py`` files to ``dest`` in the installed layout."""
    meta = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = meta.get("package-dir", {})
    for package in meta["packages"]:
        # the nearest mapped parent package gives the folder (edgemoe.sim.rtl -> sim/rtl)
        parts = package.split(".")
        for n in range(len(parts), 0, -1):
            mapped = ".".join(parts[:n])
            if mapped in dirs:
                src = root / dirs[mapped] / Path(*parts[n:])
                break
        else:
            src = root / Path(*parts)
        out = dest / Path(*parts)
        out.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            shutil.copy2(f, out / f.name)
    return dest


def lint(tree: Path, root: Path = ROOT) -> int:
    """Run lint-imports on a staged tree with the project's contracts."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [str(exe), "--config", str(root / "pyproject.toml"), "--no-cache"]
    return subprocess.run(cmd, cwd=tree, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default=None, help="stage into this folder and keep it")
    a = ap.parse_args(argv)
    if a.tree:
        return lint(stage(Path(a.tree)))
    with tempfile.TemporaryDirectory(prefix="edgemoe-imports-") as tmp:
        return lint(stage(Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
