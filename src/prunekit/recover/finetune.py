"""The recovery fine-tuning loop: train a pruned model with its structure held fixed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..distributed import (
    broadcast_buffers,
    is_main_process,
    is_wrapped,
    mean_across_ranks,
    unwrap,
)
from ..errors import SpecError
from ..result import PruneResult, model_of
from .batchnorm import recalibrate_batchnorm
from .config import RecoveryConfig
from .gradual import Pruner
from .invariants import check_unchanged, snapshot
from .step import RecoveryStep, check_teacher

log = logging.getLogger(__name__)


@dataclass
class FinetuneReport:
    """What a fine-tuning run did."""

    steps: int
    epochs: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per epoch


def _steps_per_epoch(train_loader: Iterable[Any]) -> int | None:
    try:
        return len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def _total_steps(train_loader: Iterable[Any], config: RecoveryConfig) -> int:
    per_epoch = _steps_per_epoch(train_loader)
    total = per_epoch * config.epochs if per_epoch is not None else None
    if config.max_steps is not None:
        total = config.max_steps if total is None else min(total, config.max_steps)
    if total is None:
        raise TypeError("the train loader has no len(); set RecoveryConfig.max_steps")
    return total


def check_same_steps(total: int) -> None:
    """Every rank of a DDP run must take the same number of steps (or the others wait
    forever in the gradient synchronisation of the steps one rank lacks).

    Raises:
        SpecError: naming the ranks' step counts.
    """
    counts: list[int | None] = [None] * dist.get_world_size()
    dist.all_gather_object(counts, total)
    if len(set(counts)) > 1:
        raise SpecError(
            f"the ranks would take different numbers of steps: {counts} (rank by rank)",
            "give every rank a loader of the same length (DistributedSampler, or "
            "drop_last=True), or set RecoveryConfig.max_steps",
        )


def finetune(
    model: nn.Module | PruneResult,
    train_loader: Iterable[tuple[Any, torch.Tensor]],
    config: RecoveryConfig | None = None,
    *,
    teacher: nn.Module | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, float], None] | None = None,
    description: str = "fine-tune",
    pruner: Pruner | None = None,
    keep_zeros: bool = True,
) -> FinetuneReport:
    """Fine-tune ``model`` in place with masks, pruned zeros and pruned shapes held fixed
    (or masks grown on a gradual-pruning schedule).

    A model whose masks were baked in (:func:`prunekit.finalize`, or loaded from a
    finalized artefact) keeps its pruned zeros too: the exact zeros of its weights are
    written back after every step, and it comes back finalized (see
    :mod:`prunekit.recover.zeros`). Batches are moved to the model's device; a bf16 / fp16
    model is trained through float32 master weights (see :mod:`prunekit.recover.precision`).

    Data parallel: pass the ``DistributedDataParallel`` wrapper of the pruned model and
    each rank's own loader (a ``DistributedSampler``); see :class:`RecoveryStep`. Every rank
    must take the same number of steps (checked first); the reported losses are the means
    over the ranks and only rank 0 shows a progress bar. At the end every rank takes rank
    0's buffers (BatchNorm running statistics), as DDP does before each forward, unless
    the wrapper was built with ``broadcast_buffers=False``.

    Args:
        model: a pruned (masked, finalized or physically smaller) or dense model, or a
            :class:`~prunekit.PruneResult` (its model is fine-tuned).
        train_loader: re-iterable ``(inputs, labels)`` batches (one pass per epoch).
        config: :class:`RecoveryConfig` (default: 1 epoch, SGD lr 0.01, cosine).
        teacher: dense model to distil from; required when ``config.distill`` is set.
        progress: show a tqdm bar.
        on_epoch_end: called with ``(epoch, mean loss)`` after every epoch.
        description: progress-bar label.
        pruner: a :class:`GradualPruner` (its initial sparsity is applied before
            training and the masks grow on its schedule; they only ever lose entries) or
            a :class:`ChannelFade`.
        keep_zeros: hold the exact zeros of weights without a mask at zero (the pruned
            weights of a finalized model; a weight that is entirely zero is held too, with
            a warning naming it). False trains every unmasked weight freely.

    Returns:
        A :class:`FinetuneReport`.

    Raises:
        SpecError: ``config.distill`` without a teacher, or a teacher without
            ``config.distill`` (before anything is changed).
        PlanError: fine-tuning changed a shape or a mask (other than by the pruner's
            growth), or revived a pruned weight.

    Example:
        >>> report = finetune(result.model, loader, RecoveryConfig(epochs=1, distill=True),
        ...                   teacher=dense_model)
    """
    model = model_of(model)
    module = unwrap(model)
    config = config or RecoveryConfig()
    check_teacher(config, teacher)
    total = _total_steps(train_loader, config)
    if is_wrapped(model):
        check_same_steps(total)
    if pruner is not None:
        pruner.start(module, total)
    step = RecoveryStep(model, config, total, teacher, pruner, keep_zeros=keep_zeros)
    before = snapshot(module, step.zeros.zeros)
    losses: list[float] = []
    start = time.perf_counter()
    show = progress and is_main_process()
    with torch.random.fork_rng(), tqdm(total=total, desc=description, disable=not show,
                                       leave=False) as bar:
        torch.manual_seed(config.seed)
        for epoch in range(config.epochs):
            if step.steps_done >= total:
                break
            epoch_losses = _run_epoch(step, train_loader, total, bar)
            losses.append(sum(epoch_losses) / max(1, len(epoch_losses)))
            if is_wrapped(model):
                losses[-1] = mean_across_ranks(losses[-1])
            log.info("%s epoch %d: loss %.4f", description, epoch + 1, losses[-1])
            if on_epoch_end is not None:
                on_epoch_end(epoch, losses[-1])
    if is_wrapped(model) and getattr(model, "broadcast_buffers", False):
        broadcast_buffers(module)  # the last step's running statistics, as DDP would
    recalibrate_batchnorm(model, train_loader, config.bn_recalibration_batches)
    model.eval()
    check_unchanged(module, before, may_shrink=pruner is not None)
    return FinetuneReport(step.steps_done, len(losses), time.perf_counter() - start, losses)


def _run_epoch(
    step: RecoveryStep, loader: Iterable[tuple[Any, torch.Tensor]], total: int, bar: tqdm
) -> list[float]:
    losses = []
    for inputs, targets in loader:
        if step.steps_done >= total:
            break
        losses.append(step(inputs, targets))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses
