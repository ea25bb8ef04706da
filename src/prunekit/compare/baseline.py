"""The dense baseline: load the shipped checkpoint, a cached one, or train and cache it.

The shipped checkpoint is package data (``prunekit/compare/checkpoints/``), read through
:mod:`importlib.resources`, so a wheel install finds it as well as a source checkout.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file
from torch import nn

from ..data.bundle import DataBundle
from ..errors import FormatError
from ..io.atomic import atomic_path, atomic_text
from ..measure.accuracy import evaluate_accuracy
from ..recover import RecoveryConfig, finetune

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

log = logging.getLogger(__name__)

SHIPPED_FOLDER = "checkpoints"  # inside this package
BASELINE_CONFIG = RecoveryConfig(
    epochs=4, lr=0.1, momentum=0.9, weight_decay=5e-4, warmup_steps=100, seed=0
)
TRAIN_COMMAND = "prunekit compare --train-baseline"


def save_checkpoint(model: nn.Module, card: dict[str, Any], stem: Path) -> None:
    """Write ``stem.safetensors`` (weights) and ``stem.json`` (card), each atomically."""
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(stem.with_suffix(".safetensors"), overwrite=True) as tmp:
        save_file(state, str(tmp))
    atomic_text(stem.with_suffix(".json"), json.dumps(card, indent=2, sort_keys=True) + "\n",
                overwrite=True)


@dataclass(frozen=True)
class CheckpointFiles:
    """A checkpoint's two files: weights (safetensors) and card (JSON).

    Attributes:
        weights: the ``.safetensors`` file (a path or a package resource).
        card: the ``.json`` card beside it.
    """

    weights: Traversable
    card: Traversable

    @classmethod
    def at(cls, stem: Path) -> CheckpointFiles:
        """The files ``stem.safetensors`` and ``stem.json``."""
        return cls(stem.with_suffix(".safetensors"), stem.with_suffix(".json"))

    def exists(self) -> bool:
        """Both files are present."""
        return self.weights.is_file() and self.card.is_file()


def load_checkpoint(model: nn.Module, files: CheckpointFiles) -> dict[str, Any] | None:
    """Load the weights strictly into ``model``; return the card, or None if a file is absent.

    Args:
        model: the freshly built model to load into.
        files: where the checkpoint lives (a folder on disk or package data).

    Returns:
        The card, or None when the checkpoint is not there.

    Raises:
        FormatError: the files exist but are unreadable or do not fit the model.
    """
    if not files.exists():
        return None
    try:
        card: dict[str, Any] = json.loads(files.card.read_text())
        model.load_state_dict(load_bytes(files.weights.read_bytes()), strict=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise FormatError(f"cannot load baseline {files.weights}: {exc}",
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


def shipped_files(model_ref: str) -> CheckpointFiles:
    """The checkpoint of a zoo model shipped with prunekit (package data; may be absent)."""
    folder = resources.files(__package__).joinpath(SHIPPED_FOLDER)
    return CheckpointFiles(folder.joinpath(f"{model_ref}.safetensors"),
                           folder.joinpath(f"{model_ref}.json"))


def shipped_stem(model_ref: str) -> Path:
    """Where ``--train-baseline`` writes the shipped checkpoint: this package's folder on disk."""
    return Path(__file__).resolve().parent / SHIPPED_FOLDER / model_ref


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
    shipped: CheckpointFiles | None,
    quick: bool = False,
    retrain: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Load the dense weights into ``model`` (shipped, then cached), or train and cache them.

    Args:
        model: freshly built model (loaded or trained in place).
        data: training data (used only when training).
        cache_stem: ``<out>/baseline/model`` style stem for the run's own cache.
        shipped: the checkpoint shipped with prunekit for this model and data, if any.
        quick: train the short recipe when nothing is cached.
        retrain: ignore shipped and cached weights.
        progress: show progress bars.

    Returns:
        The baseline card, with ``"source"`` set to shipped / cached / trained.

    Raises:
        FormatError: a checkpoint exists but cannot be loaded into ``model``.
    """
    cached = CheckpointFiles.at(cache_stem)
    if not retrain:
        for source, files in (("shipped", shipped), ("cached", cached)):
            if files is not None and (card := load_checkpoint(model, files)) is not None:
                log.info("dense baseline: %s %s", source, files.weights)
                return {**card, "source": source, "path": str(files.weights)}
    config = baseline_config(quick)
    log.warning("%s: training the dense baseline (%d epoch(s)) and caching it in %s",
                _why_training(shipped, retrain), config.epochs, cached.weights)
    card = train_baseline(model, data, config, progress=progress)
    save_checkpoint(model, card, cache_stem)
    return {**card, "source": "trained", "path": str(cached.weights)}


def _why_training(shipped: CheckpointFiles | None, retrain: bool) -> str:
    if retrain:
        return "retraining asked for"
    if shipped is not None:
        return (f"the shipped baseline {shipped.weights} is missing from this installation "
                "(reinstall prunekit to get it back)")
    return "no shipped baseline for this model and data, none cached"


def discard_cached_baseline(cache_stem: Path) -> None:
    """Delete a run's cached baseline (``--fresh``: it may come from other settings)."""
    for path in (cache_stem.with_suffix(".safetensors"), cache_stem.with_suffix(".json")):
        if path.is_file():
            log.warning("--fresh: discarding the cached baseline %s", path)
            path.unlink()
