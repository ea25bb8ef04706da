"""Atomic writes: a file or folder appears complete at its path, or not at all.

Everything is written to a fresh hidden temporary (``.<name>.tmp-*``) next to the target
(same file system), flushed and fsync'ed, then moved into place with one rename, and the
folder holding it is fsync'ed too. An interrupted write leaves at most that temporary
behind, never a half-written file at ``path``; a failed one leaves nothing.

One module for every writer in prunekit:

- :func:`atomic_file` / :func:`atomic_text`: bytes or text;
- :func:`atomic_path`: a temporary path for writers that want a file name
  (``safetensors.torch.save_file``, ``torch.onnx``, ``matplotlib``'s ``savefig``; it keeps
  the target's suffix, so format-by-extension works);
- :func:`atomic_folder`: a whole folder (a saved artefact).

Temporaries are created like any new file or folder (permissions from the umask, not the
owner-only mode of :mod:`tempfile`), so the result is as readable as a plain write.
"""

from __future__ import annotations

import contextlib
import os
import secrets
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


def _fresh(path: Path, kind: str, *, folder: bool) -> Path:
    """Create a new hidden sibling of ``path`` (``.<name>.<kind>-<random><suffix>``)."""
    suffix = "" if folder else path.suffix
    for _ in range(100):
        candidate = path.with_name(f".{path.name}.{kind}-{secrets.token_hex(4)}{suffix}")
        try:
            if folder:
                os.mkdir(candidate)
            else:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FormatError(f"cannot create a temporary next to {path}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file path; when the block succeeds it replaces ``path`` in one rename.

    The temporary is an empty file in ``path``'s folder with ``path``'s suffix; write it by
    name (``save_file(state, str(tmp))``, ``fig.savefig(tmp)``). If the block raises,
    ``path`` is left as it was and the temporary is removed.

    Args:
        path: the file to write.
        overwrite: replace an existing ``path``.

    Raises:
        ArtifactExistsError: ``path`` exists (or appeared meanwhile) and ``overwrite`` is False.
        FormatError: the folder cannot be created, or ``path``'s parent is a file.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "table.csv"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("a,b\\n1,2\\n")
        >>> target.read_text()
        'a,b\\n1,2\\n'
    """
    path = Path(path)
    check_target(path, overwrite)
    ensure_parent(path)
    tmp = _fresh(path, "tmp", folder=False)
    try:
        yield tmp
        fsync_path(tmp)
        if not overwrite and (path.exists() or path.is_symlink()):  # appeared while writing
            raise ArtifactExistsError(f"{path} already exists", "pass overwrite=True")
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_file(path: str | Path, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`).

    Raises:
        ArtifactExistsError: ``path`` exists and ``overwrite`` is False.
        FormatError: the folder cannot be created.
    """
    with atomic_path(path, overwrite) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_text(
    path: str | Path, text: str, overwrite: bool = False, encoding: str = "utf-8"
) -> None:
    """Write ``text`` to ``path`` atomically, encoded as ``encoding`` (newlines as given).

    Example: ``atomic_text(out / "results.json", json.dumps(data, indent=2) + "\\n",
    overwrite=True)``.

    Raises:
        ArtifactExistsError: ``path`` exists and ``overwrite`` is False.
        FormatError: the folder cannot be created.
    """
    atomic_file(path, text.encode(encoding), overwrite)


@contextlib.contextmanager
def atomic_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
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
    tmp = _fresh(path, "tmp", folder=True)
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
    _remove(old)
