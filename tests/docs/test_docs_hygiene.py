"""The site stands alone: no path outside the repository, no development history, and every
repository file it names exists."""

from __future__ import annotations

import re

import pytest

from tests.docs.docs_blocks import DOCS, ROOT, pages

#: What names a place outside the repository (or the project's history) in docs and tests.
OUTSIDE = re.compile(
    r"\.\./shared|shared/testdata|shared folder|/work/|(?-i:DESIGN\.md|STYLE\.md)"
    r"|/\s*[\"']shared[\"']",
    re.I,
)
HISTORY = re.compile(r"\bissues? #?\d+|\breplanned\b|\bthe machine\b", re.I)
TOP = ("hls", "models", "scripts", "notebooks", "samples", "tests", "host", "sim", "edgemoe")
_PATH = re.compile(r"`((?:" + "|".join(TOP) + r")/[\w./-]+)`")


def _site_files():
    return [*pages(), *DOCS.rglob("*.py")]


@pytest.mark.parametrize("path", _site_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_outside_path_and_no_history(path):
    text = path.read_text()
    for rx in (OUTSIDE, HISTORY):
        hits = [m.group(0) for m in rx.finditer(text)]
        assert not hits, f"{path.relative_to(ROOT)}: {hits}"


def test_tests_name_no_outside_path():
    """Skip messages and fixtures find reference files through EDGEMOE_TESTDATA."""
    bad = []
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name == "test_docs_hygiene.py":
            continue
        bad += [
            f"{path.relative_to(ROOT)}: {m.group(0)}" for m in OUTSIDE.finditer(path.read_text())
        ]
    assert not bad, bad


def test_documented_modules_name_no_outside_path():
    """The API reference renders these docstrings: they must not send a reader outside."""
    api = (DOCS / "api.md").read_text()
    bad = []
    for mod in re.findall(r"automodule:: edgemoe\.([\w.]+)", api):
        parts = mod.split(".")
        base = {"host": "host", "sim": "sim", "models": "models"}.get(parts[0])
        rel = f"{base}/{'/'.join(parts[1:])}.py" if base else f"edgemoe/{'/'.join(parts)}.py"
        text = (ROOT / rel).read_text()
        bad += [f"{rel}: {m}" for m in re.findall(r"\.\./shared|shared/testdata", text)]
    assert not bad, bad


def test_repository_paths_exist():
    """Every backticked repository path the site names is in the checkout."""
    missing = []
    for path in pages():
        for m in _PATH.finditer(path.read_text()):
            if not (ROOT / m.group(1)).exists():
                missing.append(f"{path.relative_to(ROOT)}: {m.group(1)}")
    assert not missing, missing
