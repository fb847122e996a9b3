"""Docs that cannot rot: every command block of the site runs as written, or says why not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.docs.docs_blocks import COMMAND_LANGS, NEEDS, ROOT, blocks, command_blocks

RUN = [b for b in command_blocks() if b.needs is None]
MARKED = [b for b in command_blocks() if b.needs is not None]


def test_every_block_is_a_known_kind():
    """A fence names its language; a marker precedes a command block and names a known need."""
    for b in blocks():
        assert b.lang, f"{b.where}: a fenced block without a language"
        if b.needs is not None:
            assert b.lang in COMMAND_LANGS, f"{b.where}: a marker before a {b.lang} block"
            assert b.needs in NEEDS, f"{b.where}: unknown marker needs: {b.needs}"


def test_the_count_of_run_and_marked_blocks():
    """Both kinds exist, and every command block is one of them (the report's figures)."""
    by_need = {n: sum(b.needs == n for b in MARKED) for n in NEEDS}
    print(f"command blocks: {len(RUN)} run by the tests, {len(MARKED)} marked {by_need}")
    assert len(RUN) + len(MARKED) == len(command_blocks())
    assert len(RUN) >= 4 and by_need["vitis"] >= 2 and by_need["board"] >= 2


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch copy of the checkout's layout: relative paths resolve as in the checkout,
    outputs stay out of it."""
    tmp = tmp_path_factory.mktemp("docs-run")
    for name in (".venv", "samples"):
        (tmp / name).symlink_to(ROOT / name)
    return tmp


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN, ids=[b.where for b in RUN])
def test_command_block_runs_as_written(block, workdir):
    if block.lang == "bash":
        argv = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        argv = [str(workdir / ".venv" / "bin" / "python"), "-c", block.code]
    proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{block.where}\n{block.code}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
