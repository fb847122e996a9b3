"""The README, the project's front page, cannot rot: its command blocks run as written (or
say what they need), its links and ``edgemoe.…`` names resolve, it stays short and tells
no history."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from PIL import Image

from tests.docs.docs_blocks import COMMAND_LANGS, NEEDS, README, ROOT, command_blocks, file_blocks
from tests.docs.test_docs_hygiene import HISTORY, OUTSIDE
from tests.docs.test_docs_names import names_in, resolve

MAX_LINES = 200
BLOCKS = command_blocks(README)
RUN = [b for b in BLOCKS if b.needs is None and b.lang == "bash"]
MARKED = [b for b in BLOCKS if b.needs is not None]
#: The one Python block: tests/api/test_api.py::test_readme_example_runs_as_written runs it.
PYTHON = [b for b in BLOCKS if b.needs is None and b.lang == "python"]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_sample_image_ships_and_is_small():
    path = ROOT / "samples" / "street.png"
    assert path.stat().st_size < 200_000
    assert Image.open(path).size == (256, 128)  # the default config's resolution


def test_the_set_up_commands_come_first():
    first = BLOCKS[0]
    assert first.line <= 5, f"{first.where}: the set-up block is not at the top"
    commands = [ln.split("#", 1)[0].strip() for ln in first.code.splitlines()]
    assert commands == ["make demo", "make test"], commands


def test_every_command_block_runs_or_says_what_it_needs():
    """Each fence names its language; a marker names a known need; the one Python block is
    the "Python API" section's, which the API tests run as written."""
    for b in file_blocks(README):
        assert b.lang, f"{b.where}: a fenced block without a language"
        if b.needs is not None:
            assert b.lang in COMMAND_LANGS, f"{b.where}: a marker before a {b.lang} block"
            assert b.needs in NEEDS, f"{b.where}: unknown marker needs: {b.needs}"
    from tests.api.test_api import readme_block

    assert [b.code for b in PYTHON] == [readme_block()]
    by_need = {n: sum(b.needs == n for b in MARKED) for n in NEEDS}
    print(f"README command blocks: {len(RUN) + len(PYTHON)} run, {len(MARKED)} marked {by_need}")
    assert len(RUN) + len(PYTHON) + len(MARKED) == len(BLOCKS)
    assert RUN and by_need["vitis"] >= 1 and by_need["board"] >= 1


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path):
    # a scratch copy of the project's layout: the commands' relative paths resolve as in
    # the checkout, and their outputs stay out of it
    for name in (".venv", "samples"):
        (tmp_path / name).symlink_to(ROOT / name)
    for block in RUN:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, f"{block.where}\n{block.code}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
    # the software workflow's outputs
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"] == "m3vit-tiny-128x256" and report["status"] == "OK"
    assert (tmp_path / "out" / "street_semseg_figure.png").exists()
    assert Image.open(tmp_path / "layers.png").format == "PNG"
    assert (tmp_path / "build" / "tiny-lean.bin").stat().st_size > 0


def test_the_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines (at most {MAX_LINES})"


def test_no_history_and_no_outside_path():
    text = README.read_text()
    for rx in (OUTSIDE, HISTORY):
        hits = [m.group(0) for m in rx.finditer(text)]
        assert not hits, hits


@pytest.mark.parametrize("name", names_in([README.read_text()]))
def test_dotted_name_imports(name):
    try:
        resolve(name)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"README names {name}, which does not import: {e}")


def _slug(heading: str) -> str:
    """A heading's anchor, as GitHub and MyST (``myst_heading_anchors``) make it."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s", "-", text)


def test_relative_links_point_at_files_and_headings():
    links = [t for t in _LINK.findall(README.read_text()) if not re.match(r"\w+:", t)]
    assert len(links) >= 10, links
    bad = []
    for link in links:
        target, _, anchor = link.partition("#")
        path = ROOT / target
        if not path.is_file():
            bad.append(f"{link}: no such file")
        elif anchor:
            headings = re.findall(r"^#+\s+(.*)$", path.read_text(), re.M)
            if anchor not in {_slug(h) for h in headings}:
                bad.append(f"{link}: no such heading")
    assert not bad, bad
