"""Files that appear whole or not at all: the one atomic-write routine of the project.

Every writer (bundles, reports, JSON, plots, checkpoints) goes through
:func:`write_file_atomic`: the content is written to a temporary file beside the
target (same file system), which is then renamed over it, so a reader sees the
old file or the new one, never part of one; missing parent folders are created
and the file gets the usual permissions (``0o666`` less the umask). Checking
output paths before any work, and staging output folders, is the CLI's part
(:mod:`edgemoe.host.app.outputs`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgemoe.errors import EdgeMoeError


def umask() -> int:
    """The process's umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file_atomic(
    path: str | os.PathLike[str],
    write: Callable[[Path], None],
    flag: str = "",
    error: type[EdgeMoeError] = EdgeMoeError,
) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    Raises
    ------
    EdgeMoeError
        (or ``error``) ``path`` is a folder, or the folder cannot be created or
        written (a parent that is a file, a full or read-only disk). ``flag``
        (``--json``) prefixes the path in the message.
    """
    path = Path(path)
    what = f"{flag} {path}".strip()
    if path.is_dir():
        raise error(f"cannot write {what}: is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the suffix is the target's: writers that infer the format from it (matplotlib) see it
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~umask())
    except OSError as e:
        raise error(f"cannot write {what}: {e.strerror or e}") from None
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise error(f"cannot write {what}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview,
    flag: str = "",
    error: type[EdgeMoeError] = EdgeMoeError,
) -> None:
    """:func:`write_file_atomic` of ``data``."""
    write_file_atomic(path, lambda tmp: tmp.write_bytes(data), flag, error)


def write_json_atomic(path: str | os.PathLike[str], data: Any, flag: str = "") -> None:
    """:func:`write_file_atomic` of ``data`` as indented JSON with a final newline."""
    text = json.dumps(data, indent=2) + "\n"
    write_file_atomic(path, lambda tmp: tmp.write_text(text), flag)
