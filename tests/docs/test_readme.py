"""The README's software-only commands, run exactly as written (issue 17)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- tests/docs/test_readme.py runs the next block's edgemoe commands as written -->"


def readme_commands() -> list[str]:
    """The ``.venv/bin/edgemoe`` lines of the marked block (``make`` lines run as make)."""
    text = (ROOT / "README.md").read_text()
    assert MARKER in text, "the README lost its tested block"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER) :], re.S).group(1)
    commands = []
    for line in block.splitlines():
        command = line.split("  #", 1)[0].strip()
        if command.startswith(".venv/bin/edgemoe "):
            commands.append(command)
    return commands


def test_the_sample_image_ships_and_is_small():
    path = ROOT / "samples" / "street.png"
    assert path.stat().st_size < 200_000
    assert Image.open(path).size == (256, 128)  # the default config's resolution


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path):
    # a scratch copy of the project's layout: the commands' relative paths resolve as in
    # the checkout, and their outputs stay out of it
    for name in (".venv", "samples"):
        (tmp_path / name).symlink_to(ROOT / name)
    commands = readme_commands()
    assert len(commands) == 3
    for command in commands:
        proc = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"] == "m3vit-tiny-128x256" and report["status"] == "OK"
    assert (tmp_path / "out" / "street_semseg_figure.png").exists()
    assert Image.open(tmp_path / "layers.png").format == "PNG"
