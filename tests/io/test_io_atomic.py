"""Atomic writes: the target is complete or untouched, no temporary is left, and the
result is as readable as a plain write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from prunekit.errors import ArtifactExistsError, FormatError
from prunekit.io.atomic import atomic_file, atomic_folder, atomic_path, atomic_text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_text_is_written_exactly_and_existing_files_need_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "report.md"  # missing folders are created
    atomic_text(target, "# title\nü\n")
    assert target.read_bytes() == "# title\nü\n".encode()
    with pytest.raises(ArtifactExistsError, match="overwrite=True"):
        atomic_text(target, "other")
    assert target.read_text(encoding="utf-8") == "# title\nü\n"
    atomic_text(target, "second\n", overwrite=True)
    assert target.read_text() == "second\n"
    assert os.listdir(target.parent) == ["report.md"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(target, True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["weights.safetensors"]


def test_the_temporary_is_a_hidden_sibling_with_the_targets_suffix(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".plot.png.tmp-")
        assert tmp.suffix == ".png"  # writers that pick a format from the name still work
        assert not target.exists()
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"


def test_a_file_appearing_during_the_write_is_not_clobbered(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    with pytest.raises(ArtifactExistsError), atomic_path(target) as tmp:
        tmp.write_text("new")
        target.write_text("someone else's")
    assert target.read_text() == "someone else's"
    assert os.listdir(tmp_path) == ["results.json"]


def test_a_parent_that_is_a_file_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FormatError, match="not a folder"):
        atomic_file(tmp_path / "file" / "out.bin", b"data")


def test_files_and_folders_get_the_permissions_of_a_plain_write(tmp_path: Path) -> None:
    plain_file, plain_folder = tmp_path / "plain.txt", tmp_path / "plain"
    plain_file.write_text("x")
    plain_folder.mkdir()
    atomic_text(tmp_path / "atomic.txt", "x")
    with atomic_folder(tmp_path / "artefact") as folder:
        atomic_file(folder / "manifest.json", b"{}")
    assert mode(tmp_path / "atomic.txt") == mode(plain_file)
    assert mode(tmp_path / "artefact") == mode(plain_folder)
    assert mode(tmp_path / "artefact" / "manifest.json") == mode(plain_file)


def test_a_folder_replaces_the_old_one_whole(tmp_path: Path) -> None:
    target = tmp_path / "artefact"
    with atomic_folder(target) as folder:
        (folder / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_folder(target, overwrite=True) as folder:
        (folder / "a").write_text("2")
        raise RuntimeError("interrupted")
    assert (target / "a").read_text() == "1"
    with atomic_folder(target, overwrite=True) as folder:
        (folder / "b").write_text("2")
    assert os.listdir(target) == ["b"] and os.listdir(tmp_path) == ["artefact"]
