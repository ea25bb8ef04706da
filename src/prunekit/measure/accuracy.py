"""Top-1 accuracy of a classifier on batches of ``(inputs, labels)``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..inputs import call_model, eval_mode
from ..result import PruneResult, model_of
from .placement import model_device, to_device


def evaluate_accuracy(
    model: nn.Module | PruneResult,
    batches: Iterable[tuple[Any, torch.Tensor]],
    *,
    progress: bool = False,
    description: str = "evaluate",
) -> float:
    """Fraction of samples whose arg-max logit equals the label.

    Inputs are moved to the model's device, labels to the logits'.

    Args:
        model: classifier returning (N, classes) logits.
        batches: ``(inputs, labels)`` batches.
        progress: show a tqdm bar.
        description: progress-bar label.

    Returns:
        Top-1 accuracy in [0, 1] (0.0 for no samples).
    """
    model = model_of(model, "model")
    correct = total = 0
    device = model_device(model)
    with eval_mode(model), torch.inference_mode():
        for inputs, labels in tqdm(batches, desc=description, disable=not progress, leave=False):
            logits = call_model(model, to_device(inputs, device))
            correct += int((logits.argmax(dim=-1) == labels.to(logits.device)).sum())
            total += int(labels.numel())
    return correct / total if total else 0.0
