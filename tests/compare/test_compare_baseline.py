"""The shipped baseline is package data; training a baseline is always announced."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest
import torch

from prunekit import zoo
from prunekit.compare.baseline import (
    CheckpointFiles,
    ensure_baseline,
    load_checkpoint,
    shipped_files,
)
from prunekit.data import DataBundle, TensorLoader

ROOT = Path(__file__).resolve().parents[2]
WHEEL_FILES = ("prunekit/compare/checkpoints/fmnist_resnet.safetensors",
               "prunekit/compare/checkpoints/fmnist_resnet.json",
               "prunekit/py.typed")  # type checkers read the package's annotations


def _data() -> DataBundle:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1, 28, 28, generator=gen)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return DataBundle(TensorLoader(x[:96], y[:96], 32, shuffle=True),
                      TensorLoader(x[96:], y[96:], 32), name="synthetic")


def test_shipped_baseline_is_found_through_importlib_resources() -> None:
    folder = resources.files("prunekit.compare").joinpath("checkpoints")
    assert folder.joinpath("fmnist_resnet.safetensors").is_file()
    files = shipped_files("fmnist_resnet")
    assert files.exists()
    model = zoo.build("fmnist_resnet")
    card = load_checkpoint(model, files)  # strict: every tensor fits
    assert card is not None and card["model"] == "fmnist_resnet"
    assert 0.9 < card["accuracy"] < 1.0


@pytest.mark.slow
def test_a_built_wheel_contains_the_shipped_baseline_and_py_typed(tmp_path: Path) -> None:
    source = tmp_path / "src-copy"  # build from a copy: pip writes build/ beside the sources
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    wheel = next((tmp_path / "dist").glob("prunekit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(WHEEL_FILES) <= names


def test_training_a_baseline_is_announced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="prunekit"):
        card = ensure_baseline(zoo.build("mlp"), _data(), cache_stem=tmp_path / "model",
                               shipped=None, quick=True, progress=False)
    assert card["source"] == "trained"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("training the dense baseline" in m and str(tmp_path) in m for m in warnings)


def test_a_missing_shipped_baseline_is_named_before_training(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gone = CheckpointFiles.at(tmp_path / "nowhere" / "fmnist_resnet")
    with caplog.at_level(logging.WARNING, logger="prunekit"):
        card = ensure_baseline(zoo.build("mlp"), _data(), cache_stem=tmp_path / "model",
                               shipped=gone, quick=True, progress=False)
    assert card["source"] == "trained"
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "missing from this installation" in warnings and "nowhere" in warnings
