"""``prunekit compare`` bad input: exit code 2, the problem named, a hint, nothing run."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from prunekit.cli.app import app


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["compare", "--no-progress", *args])
    return result.exit_code, result.output


def test_unknown_variant(tmp_path: Path) -> None:
    code, out = _run("--variants", "unstructured-90,sparse-99", "--out", str(tmp_path))
    assert code == 2
    assert "unknown variant 'sparse-99'" in out and "hint:" in out
    assert not (tmp_path / "results.json").exists()


def test_sparsity_out_of_range(tmp_path: Path) -> None:
    code, out = _run("--variants", "structured-100", "--out", str(tmp_path))
    assert code == 2 and "out of range" in out


def test_missing_dataset_names_the_file_and_install_hint(tmp_path: Path) -> None:
    code, out = _run("--data-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 2
    assert "train-images-idx3-ubyte.gz" in out
    assert "apt-get install dataset-fashion-mnist" in out


def test_failing_model_and_dataset_factories(tmp_path: Path) -> None:
    code, out = _run("--model", "prunekit.zoo:does_not_exist", "--out", str(tmp_path))
    assert code == 2 and "cannot import model factory" in out
    code, out = _run("--dataset", "prunekit.data:nothing_here", "--out", str(tmp_path))
    assert code == 2 and "cannot import dataset factory" in out


def test_variants_file(tmp_path: Path) -> None:
    listing = tmp_path / "variants.txt"
    listing.write_text("# my list\nunstructured-90\nbogus-1\n")
    code, out = _run("--variants-file", str(listing), "--out", str(tmp_path))
    assert code == 2 and "unknown variant 'bogus-1'" in out
