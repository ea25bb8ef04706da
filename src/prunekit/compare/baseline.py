"""The dense baseline: load the shipped checkpoint, a cached one, or train and cache it."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..data.bundle import DataBundle
from ..errors import FormatError
from ..measure.accuracy import evaluate_accuracy
from ..recover import RecoveryConfig, finetune

log = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parents[3] / "checkpoints"
BASELINE_CONFIG = RecoveryConfig(
    epochs=4, lr=0.1, momentum=0.9, weight_decay=5e-4, warmup_steps=100, seed=0
)
TRAIN_COMMAND = "prunekit compare --train-baseline"


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(model: nn.Module, card: dict[str, Any], stem: Path) -> None:
    """Write ``stem.safetensors`` (weights) and ``stem.json`` (card), each atomically."""
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    _atomic_write(stem.with_suffix(".safetensors"), lambda p: save_file(state, str(p)))
    text = json.dumps(card, indent=2, sort_keys=True) + "\n"
    _atomic_write(stem.with_suffix(".json"), lambda p: p.write_text(text))


def load_checkpoint(model: nn.Module, stem: Path) -> dict[str, Any] | None:
    """Load ``stem.safetensors`` strictly into ``model``; return its card, or None if absent.

    Raises:
        FormatError: the files exist but are unreadable or do not fit the model.
    """
    weights, card_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if not (weights.is_file() and card_path.is_file()):
        return None
    try:
        card: dict[str, Any] = json.loads(card_path.read_text())
        model.load_state_dict(load_file(str(weights)), strict=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise FormatError(f"cannot load baseline {weights}: {exc}",
                          "delete the file to retrain the baseline") from exc
    return card


def train_baseline(
    model: nn.Module,
    data: DataBundle,
    config: RecoveryConfig = BASELINE_CONFIG,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` in place from its initialisation; return a card describing the run.

    Args:
        model: freshly initialised model.
        data: training and test batches.
        config: optimiser, schedule and epochs.
        progress: show progress bars.

    Returns:
        The card: accuracy, epochs, seed, settings, seconds, threads.
    """
    start = time.perf_counter()
    report = finetune(model, data.train, config, progress=progress, description="train baseline")
    accuracy = evaluate_accuracy(model, data.test, progress=progress)
    log.info("baseline accuracy %.4f after %d epochs", accuracy, report.epochs)
    return {
        "accuracy": accuracy,
        "epochs": report.epochs,
        "steps": report.steps,
        "seed": config.seed,
        "config": config.to_dict(),
        "dataset": data.name,
        "data": data.info,
        "epoch_losses": report.losses,
        "seconds": round(time.perf_counter() - start, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": TRAIN_COMMAND,
    }


def shipped_stem(model_ref: str) -> Path:
    """Where the project's own trained checkpoint of a zoo model lives."""
    return SHIPPED_DIR / model_ref


def baseline_config(quick: bool) -> RecoveryConfig:
    """The dense training recipe (one short epoch on the subset for ``--quick``)."""
    if quick:
        return RecoveryConfig(epochs=1, lr=0.05, warmup_steps=2, seed=BASELINE_CONFIG.seed)
    return BASELINE_CONFIG


def ensure_baseline(
    model: nn.Module,
    data: DataBundle,
    *,
    cache_stem: Path,
    shipped: Path | None,
    quick: bool = False,
    retrain: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Load the dense weights into ``model`` (shipped, then cached), or train and cache them.

    Args:
        model: freshly built model (loaded or trained in place).
        data: training data (used only when training).
        cache_stem: ``<out>/baseline/model`` style stem for the run's own cache.
        shipped: stem of a checkpoint shipped with prunekit for this model and data, if any.
        quick: train the short recipe when nothing is cached.
        retrain: ignore shipped and cached weights.
        progress: show progress bars.

    Returns:
        The baseline card, with ``"source"`` set to shipped / cached / trained.
    """
    if not retrain:
        for source, stem in (("shipped", shipped), ("cached", cache_stem)):
            if stem is not None and (card := load_checkpoint(model, stem)) is not None:
                log.info("dense baseline: %s %s", source, stem)
                return {**card, "source": source, "path": str(stem.with_suffix(".safetensors"))}
    card = train_baseline(model, data, baseline_config(quick), progress=progress)
    save_checkpoint(model, card, cache_stem)
    return {**card, "source": "trained", "path": str(cache_stem.with_suffix(".safetensors"))}
