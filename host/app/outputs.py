"""Output paths of the CLI: checked before any work, written atomically.

Every command checks each output path it was given (``--out``, ``--json``,
``--plot``) before it starts working, so a bad path costs nothing; files
appear whole or not at all, with the usual permissions (``0o666`` / ``0o777``
less the umask), and an output folder is staged on the file system it will
live on, so the final move is a rename (a mount point included).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from edgemoe.errors import EdgeMoeError
from edgemoe.files import umask, write_file_atomic


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (None: one can).

    Tried, not guessed from the mode bits: root passes ``os.access`` on a
    read-only file system or in ``/proc``.
    """
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".edgemoe-probe-"):
            return None
    except OSError as e:
        return e.strerror or str(e)


def _check_creatable(folder: Path, flag: str, named: Path) -> None:
    """``folder`` exists or can be created, and is writable (messages name ``named``)."""
    anchor = _nearest_existing(folder)
    if not anchor.is_dir():
        raise EdgeMoeError(f"cannot write {flag} {named}: {anchor} is not a folder")
    why = _writable(anchor)
    if why:
        raise EdgeMoeError(f"cannot write {flag} {named}: {anchor} is not writable ({why})")


def _check_parent(path: Path, flag: str) -> None:
    """The folder that will hold ``path`` exists or can be created, and is writable."""
    _check_creatable(path.parent, flag, path)


def check_output_file(path: str | None, flag: str, suffix: str | None = None) -> Path | None:
    """Check an output file path before any work (None: the option was not given).

    Parameters
    ----------
    path : str or None
    flag : str
        The option, for messages (``--json``).
    suffix : str, optional
        The extension the file must have (``.png`` for a plot).

    Raises
    ------
    EdgeMoeError
        Empty path, a folder at ``path``, a wrong extension, a parent that is a
        file, or a place that is not writable.
    """
    if path is None:
        return None
    if not path.strip():
        raise EdgeMoeError(f"{flag} '': an empty path names no file")
    p = Path(path)
    if p.is_dir():
        raise EdgeMoeError(f"cannot write {flag} {p}: is a directory")
    if suffix and p.suffix.lower() != suffix:
        raise EdgeMoeError(f"{flag} {p}: the file is {suffix[1:].upper()}, name it *{suffix}")
    _check_parent(p, flag)
    if p.exists() and not os.access(p, os.W_OK):
        raise EdgeMoeError(f"cannot write {flag} {p}: the file is read-only")
    return p


def check_out_dir(text: str, force: bool) -> Path:
    """Check ``run --out`` before any work: a new folder, or an empty one, or ``--force``.

    Raises
    ------
    EdgeMoeError
        Empty path, a file at the path, a non-empty folder without ``force``, a
        parent that is a file, a place that is not writable.
    """
    if not text.strip():
        raise EdgeMoeError("--out '': an empty path names no folder")
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise EdgeMoeError(f"cannot write --out {out}: exists and is not a folder")
    if out.is_dir():
        try:
            entries = [p.name for p in out.iterdir() if not p.name.startswith(".")]
        except OSError as e:
            raise EdgeMoeError(f"cannot write --out {out}: {e.strerror or e}") from None
        if entries and not force:
            raise EdgeMoeError(
                f"--out {out} is not empty ({len(entries)} entries, e.g. {sorted(entries)[0]}): "
                "choose a new folder, or --force to write into it"
            )
        why = _writable(out)
        if why:
            raise EdgeMoeError(f"cannot write --out {out}: the folder is not writable ({why})")
    else:
        _check_creatable(out, "--out", out)
    return out


def staging_dir(out: Path) -> Path:
    """A new empty folder on the file system ``out`` lives on.

    Inside ``out`` when it exists (it may be a mount point), else beside it.
    """
    try:
        if out.is_dir():
            return Path(tempfile.mkdtemp(dir=out, prefix=".edgemoe-", suffix=".tmp"))
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except (FileExistsError, NotADirectoryError):
        raise EdgeMoeError(f"cannot write --out {out}: a parent path is not a folder") from None
    except OSError as e:
        raise EdgeMoeError(f"cannot write --out {out}: {e.strerror or e}") from None


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        # another file system after all (a bind mount inside --out): copy, then rename there
        write_file_atomic(dst, lambda tmp: shutil.copyfile(src, tmp), "--out")
        src.unlink()


def publish(staging: Path, out: Path) -> None:
    """Move every staged file into ``out`` and remove ``staging``; normal permissions.

    Raises
    ------
    EdgeMoeError
        A move fails (the staged files are left for the caller to remove).
    """
    try:
        if staging.parent == out:
            for f in sorted(staging.iterdir()):
                _move(f, out / f.name)
            staging.rmdir()
            return
        os.chmod(staging, 0o777 & ~umask())  # mkdtemp made it 0700
        try:
            os.replace(staging, out)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            out.mkdir()
            for f in sorted(staging.iterdir()):
                _move(f, out / f.name)
            staging.rmdir()
    except OSError as e:
        raise EdgeMoeError(f"cannot write --out {out}: {e.strerror or e}") from None
