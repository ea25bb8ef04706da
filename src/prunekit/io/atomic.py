"""Atomic writes: an artefact appears complete at its path, or not at all.

Files are written into a fresh temporary folder next to the target (same file system),
flushed and fsync'ed, then moved into place with a rename. An interrupted save leaves at
most a hidden ``.<name>.tmp-*`` folder behind, never a half-written artefact at ``path``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ArtifactExistsError, FormatError


def fsync_path(path: Path) -> None:
    """Flush a file's or folder's data to disk (folders: where the OS allows it)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # some systems cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_target(path: Path, overwrite: bool) -> None:
    """Raise before any work if ``path`` exists and ``overwrite`` is False."""
    if path.exists() and not overwrite:
        raise ArtifactExistsError(
            f"{path} already exists", "pass overwrite=True (CLI: --overwrite)"
        )
    if path.parent.exists() and not path.parent.is_dir():
        raise FormatError(f"{path.parent} is not a folder", "choose another output path")


def ensure_parent(path: Path) -> None:
    """Create the folder that will hold ``path`` (an empty folder is harmless if we fail)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FormatError(f"cannot create {path.parent}: {exc}") from exc


@contextlib.contextmanager
def atomic_folder(path: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` in one rename.

    Args:
        path: the artefact folder to create.
        overwrite: replace an existing file or folder at ``path``.

    Raises:
        ArtifactExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    check_target(path, overwrite)
    ensure_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        for child in tmp.iterdir():
            fsync_path(child)
        fsync_path(tmp)
        _move_into_place(tmp, path, overwrite)
        fsync_path(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if not path.exists() and not path.is_symlink():
        os.rename(tmp, path)
        return
    if not overwrite:  # appeared while we were writing
        raise ArtifactExistsError(f"{path} already exists", "pass overwrite=True")
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.rmdir(old)
    os.rename(path, old)  # the old artefact stays whole until the new one is in place
    os.rename(tmp, path)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def atomic_file(path: Path, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + os.replace)."""
    path = Path(path)
    check_target(path, overwrite)
    ensure_parent(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
