"""The code blocks of the documentation site (``docs/*.md``) and of the README, as the docs
tests read them.

A fenced block is a **command block** when its language is ``bash`` or ``python``. The
docs tests run every command block as written, unless the line before it is a marker
``<!-- needs: WHAT -->`` naming what it needs that a test run does not have:
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

#: What a marked block needs, and why the tests do not run it.
NEEDS = {
    "vitis": "the Xilinx tools (Vitis HLS, Vivado) on PATH",
    "board": "a ZCU104 running PYNQ",
    "checkpoint": "the user's own M3ViT checkpoint",
    "long": "minutes of CPU: too long for make test (the same code paths have their own tests)",
}
COMMAND_LANGS = ("bash", "python")
_FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*needs:\s*([\w-]+)\s*-->")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str  #: path relative to the repository root
    line: int  #: 1-based line of the opening fence
    lang: str
    code: str
    needs: str | None  #: the marker before it, if any

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """Every Markdown page of the site."""
    return sorted(DOCS.rglob("*.md"))


def file_blocks(path: Path) -> list[Block]:
    """Every fenced block of one Markdown file, in order."""
    text = path.read_text()
    out = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.fullmatch(before.strip())
        out.append(
            Block(
                page=str(path.relative_to(ROOT)),
                line=text.count("\n", 0, m.start()) + 1,
                lang=m.group(1),
                code=m.group(2),
                needs=marker.group(1) if marker else None,
            )
        )
    return out


def blocks() -> list[Block]:
    """Every fenced block of every page, in page order."""
    return [b for path in pages() for b in file_blocks(path)]


def command_blocks(path: Path | None = None) -> list[Block]:
    """The blocks in a command language: of the site's pages, or of the file ``path``."""
    found = blocks() if path is None else file_blocks(path)
    return [b for b in found if b.lang in COMMAND_LANGS]
