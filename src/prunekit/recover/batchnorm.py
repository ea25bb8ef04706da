"""Re-estimating BatchNorm running statistics for the current weights."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..distributed import is_wrapped, sum_across_ranks, unwrap
from ..inputs import call_model
from ..measure.placement import model_device, to_device
from ..result import PruneResult, model_of

Norm = nn.modules.batchnorm._BatchNorm


class _BatchMoments:
    """Sums of every batch's per-channel mean and unbiased variance of one norm's input, in
    float64 whatever the model's dtype (a bf16 running average drifts by its rounding)."""

    def __init__(self) -> None:
        self.means: torch.Tensor | None = None
        self.variances: torch.Tensor | None = None
        self.batches = 0

    def hook(self, _: nn.Module, inputs: tuple[Any, ...]) -> None:
        x = inputs[0].detach().double()
        dims = [0, *range(2, x.dim())]  # every dim but the channels
        mean, var = x.mean(dim=dims), x.var(dim=dims, correction=1)
        self.means = mean if self.means is None else self.means + mean
        self.variances = var if self.variances is None else self.variances + var
        self.batches += 1

    def write(self, norm: Norm) -> None:
        """Set the norm's running statistics to the averages (reset if it never ran)."""
        norm.reset_running_stats()
        if self.means is None or self.variances is None:
            return
        assert norm.running_mean is not None and norm.running_var is not None
        with torch.no_grad():
            norm.running_mean.copy_(self.means / self.batches)
            norm.running_var.copy_(self.variances / self.batches)
            if norm.num_batches_tracked is not None:
                norm.num_batches_tracked.fill_(self.batches)


def recalibrate_batchnorm(
    model: nn.Module | PruneResult, batches: Iterable[tuple[Any, torch.Tensor]], max_batches: int
) -> int:
    """Recompute every BatchNorm's running mean/var as exact averages over some batches.

    Pruning (and short fine-tuning) changes the activations each BatchNorm sees, while its
    running statistics still describe the old ones; eval-mode accuracy then understates
    the model. This runs ``max_batches`` forward passes in train mode without gradients and
    leaves the statistics of exactly those batches: the average of each batch's mean and
    unbiased variance, as BatchNorm's cumulative average (``momentum=None``) would give,
    but summed in float64 and stored in the buffers' own dtype. Inputs are moved to the
    model's device. Weights are not touched.

    A ``DistributedDataParallel`` wrapper averages over the batches of every rank (each
    rank runs ``max_batches`` of its own; the sums are added across ranks), so the ranks'
    statistics stay equal.

    Args:
        model: the model (left in eval mode), or its DDP wrapper.
        batches: ``(inputs, labels)`` batches; labels are ignored.
        max_batches: how many batches to average over (0 does nothing), per rank.

    Returns:
        The number of batches used (over every rank for a DDP wrapper).
    """
    model = model_of(model, "model")
    across_ranks = is_wrapped(model)
    model = unwrap(model)
    norms = [m for m in model.modules() if isinstance(m, Norm) and m.track_running_stats]
    if not norms or max_batches <= 0:
        return 0
    moments = [_BatchMoments() for _ in norms]
    hooks = [m.register_forward_pre_hook(s.hook) for m, s in zip(norms, moments, strict=True)]
    device = model_device(model)
    used = 0
    model.train()
    try:
        with torch.no_grad():
            for inputs, _ in itertools.islice(batches, max_batches):
                call_model(model, to_device(inputs, device))
                used += 1
    finally:
        for handle in hooks:
            handle.remove()
    if across_ranks:
        used = _sum_over_ranks(norms, moments, used)
    for norm, stats in zip(norms, moments, strict=True):
        stats.write(norm)
    model.eval()
    return used


def _sum_over_ranks(norms: list[Norm], moments: list[_BatchMoments], used: int) -> int:
    """Add every rank's moment sums and batch counts into ``moments``; returns the total
    batch count."""
    local: dict[str, torch.Tensor] = {"used": torch.tensor([float(used)])}
    shapes: dict[str, tuple[int, ...]] = {"used": (1,)}
    for i, (norm, stats) in enumerate(zip(norms, moments, strict=True)):
        shapes.update({f"{i}/mean": (norm.num_features,), f"{i}/var": (norm.num_features,),
                       f"{i}/n": (1,)})
        local[f"{i}/n"] = torch.tensor([float(stats.batches)])
        if stats.means is not None and stats.variances is not None:
            local[f"{i}/mean"], local[f"{i}/var"] = stats.means, stats.variances
    device = norms[0].running_mean.device if norms[0].running_mean is not None else "cpu"
    summed = sum_across_ranks(local, shapes, device)
    for i, stats in enumerate(moments):
        stats.batches = int(summed[f"{i}/n"][0])
        if stats.batches:
            stats.means, stats.variances = summed[f"{i}/mean"], summed[f"{i}/var"]
    return int(summed["used"][0])
