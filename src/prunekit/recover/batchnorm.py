"""Re-estimating BatchNorm running statistics for the current weights."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..inputs import call_model


def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[tuple[Any, torch.Tensor]], max_batches: int
) -> int:
    """Recompute every BatchNorm's running mean/var as exact averages over some batches.

    Pruning (and short fine-tuning) changes the activations each BatchNorm sees, while its
    running statistics still describe the old ones; eval-mode accuracy then understates
    the model. This runs ``max_batches`` forward passes in train mode without gradients and
    leaves the statistics of exactly those batches. Weights are not touched.

    Args:
        model: the model (left in eval mode).
        batches: ``(inputs, labels)`` batches; labels are ignored.
        max_batches: how many batches to average over (0 does nothing).

    Returns:
        The number of batches used.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or max_batches <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    used = 0
    model.train()
    with torch.no_grad():
        for inputs, _ in itertools.islice(batches, max_batches):
            call_model(model, inputs)
            used += 1
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
    return used
