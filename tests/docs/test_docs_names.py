"""Docs that cannot rot: every ``edgemoe.…`` dotted name in the site can be imported."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.docs.docs_blocks import DOCS, pages

#: Files named like the package, not Python names: the overlay's bitstream and handoff.
FILES = {"edgemoe.bit", "edgemoe.hwh"}
_NAME = re.compile(r"(?<![\w./-])edgemoe(?:\.[A-Za-z_]\w*)+")


def names_in(texts: list[str]) -> list[str]:
    """Every distinct ``edgemoe.x.y`` of ``texts``, less the overlay's file names."""
    return sorted({m.group(0) for text in texts for m in _NAME.finditer(text)} - FILES)


def dotted_names() -> list[str]:
    """Every distinct ``edgemoe.x.y`` of the pages and of the site's own Python."""
    texts = [p.read_text() for p in pages()]
    texts += [p.read_text() for p in DOCS.rglob("*.py")]
    return names_in(texts)


def resolve(name: str) -> object:
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


def test_the_docs_name_the_package():
    assert len(dotted_names()) >= 30


@pytest.mark.parametrize("name", dotted_names())
def test_dotted_name_imports(name):
    try:
        resolve(name)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"docs name {name}, which does not import: {e}")


def test_the_file_names_are_files():
    """``edgemoe.bit`` / ``edgemoe.hwh`` are only ever the overlay's files."""
    for p in pages():
        for m in re.finditer(r"edgemoe\.(bit|hwh)\b", p.read_text()):
            assert m.group(0) in FILES
