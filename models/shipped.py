"""Where the shipped trained checkpoints are, without importing torch (the board path)."""

from __future__ import annotations

import json
from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
SUFFIX = ".safetensors"


def shipped_checkpoint(config: str) -> Path | None:
    """The shipped ``.safetensors`` of config ``config`` (by name), if there is one."""
    path = CHECKPOINT_DIR / f"{config}{SUFFIX}"
    return path if path.is_file() else None


def read_record(path: str | Path) -> dict:
    """The JSON training record beside a weight file (``{stem}.json``), ``{}`` if none."""
    rec = Path(path).with_suffix(".json")
    try:
        return json.loads(rec.read_text()) if rec.is_file() else {}
    except (OSError, ValueError):
        return {}
