"""The recovery budget every model of a comparison gets: one recipe, one batch order."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.bundle import DataBundle
from ..data.loaders import TensorLoader
from ..recover import FinetuneReport, Pruner, finetune
from .settings import CompareSettings


def recover(
    model: nn.Module,
    data: DataBundle,
    settings: CompareSettings,
    *,
    teacher: nn.Module,
    pruner: Pruner | None = None,
    description: str = "fine-tune",
) -> FinetuneReport:
    """Fine-tune ``model`` in place with the comparison's recipe (``settings.recovery()``).

    Every caller (each variant, the dense control, the peer benchmark) gets the same
    optimiser, schedule, seed and batch order: a :class:`TensorLoader` is rewound to its
    first epoch, so what ran before does not change the batches.

    Args:
        model: the model to train (moved to channels_last, its faster layout on CPU).
        data: training batches (``data.train``).
        settings: the run's settings (epochs, lr, seed, distillation, augmentation).
        teacher: the dense model (the distillation teacher when ``settings.distill``).
        pruner: a gradual pruner or channel fade (None: masks and shapes fixed).
        description: progress-bar label.

    Returns:
        The :class:`~prunekit.recover.FinetuneReport`.

    Raises:
        PlanError: fine-tuning changed the pruned structure.
    """
    model.to(memory_format=torch.channels_last)
    teacher.to(memory_format=torch.channels_last)  # a copy made for the run, never the user's
    if isinstance(data.train, TensorLoader):
        data.train.epoch = 0
        data.train.augment = settings.augment
    return finetune(model, data.train, settings.recovery(),
                    teacher=teacher if settings.distill else None,
                    progress=settings.progress, description=description, pruner=pruner)


def finetune_record(report: FinetuneReport, settings: CompareSettings,
                    schedule: dict[str, Any]) -> dict[str, Any]:
    """What results.json keeps about one fine-tuning run."""
    return {"steps": report.steps, "epochs": report.epochs, "seconds": round(report.seconds, 1),
            "losses": report.losses, "distill": settings.distill, "schedule": schedule,
            "augment": settings.augment}
