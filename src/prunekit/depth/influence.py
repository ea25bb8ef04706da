"""How much removing blocks changes a model's outputs, and which blocks to remove.

A block is skipped by a temporary forward hook that returns the block's input as its output
(what ``nn.Identity`` in its place computes); the hook is removed afterwards, so the model is
not changed. The change is measured on calibration batches in eval mode without gradients:
the summed squared difference of every output tensor from the unchanged model's, divided by
the summed square of those outputs (0 = unchanged, 1 = as large as the outputs themselves).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..inputs import model_outputs

log = logging.getLogger(__name__)
Outputs = list[list[torch.Tensor]]


@contextlib.contextmanager
def skipping(model: nn.Module, names: Iterable[str]) -> Iterator[None]:
    """Inside the block, the named modules pass their input through as their output."""
    def identity(_module: nn.Module, args: tuple[Any, ...], _output: Any) -> Any:
        return args[0]

    handles = [model.get_submodule(n).register_forward_hook(identity) for n in names]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def reference_outputs(model: nn.Module, batches: Sequence[Any]) -> Outputs:
    """The model's output tensors on every batch (the baseline of :func:`output_change`)."""
    return [model_outputs(model, batch) for batch in batches]


def output_change(model: nn.Module, batches: Sequence[Any], reference: Outputs,
                  removed: Iterable[str]) -> float:
    """Relative squared change of the outputs when the ``removed`` blocks are skipped.

    Args:
        model: the model (not changed).
        batches: calibration batches, each what the model accepts.
        reference: :func:`reference_outputs` of the same batches.
        removed: block names to skip.

    Returns:
        ``sum ||y - y_ref||^2 / sum ||y_ref||^2`` over every batch and output tensor.
    """
    error = torch.zeros((), dtype=torch.float64)
    scale = torch.zeros((), dtype=torch.float64)
    with skipping(model, removed):
        for batch, before in zip(batches, reference, strict=True):
            for after, ref in zip(model_outputs(model, batch), before, strict=True):
                error += (after.double() - ref.double()).pow(2).sum().cpu()
                scale += ref.double().pow(2).sum().cpu()
    return float(error / scale.clamp_min(torch.finfo(torch.float64).tiny))


@dataclass
class Selection:
    """Blocks chosen for removal.

    Attributes:
        removed: the blocks, in the order they were chosen.
        influence: ``{block: output change with that block alone removed}`` for every
            candidate (empty when nothing was measured).
        change: output change with all of ``removed`` removed (None when not measured).
    """

    removed: list[str]
    influence: dict[str, float] = field(default_factory=dict)
    change: float | None = None


def _alone(model: nn.Module, batches: Sequence[Any], reference: Outputs,
           candidates: list[str]) -> dict[str, float]:
    return {name: output_change(model, batches, reference, [name]) for name in candidates}


def select_oneshot(model: nn.Module, candidates: list[str], count: int,
                   batches: Sequence[Any]) -> Selection:
    """Measure each candidate alone; remove the ``count`` least influential."""
    reference = reference_outputs(model, batches)
    influence = _alone(model, batches, reference, candidates)
    removed = sorted(candidates, key=lambda n: influence[n])[:count]
    return Selection(removed, influence, output_change(model, batches, reference, removed))


def select_greedy(model: nn.Module, candidates: list[str], count: int,
                  batches: Sequence[Any]) -> Selection:
    """Remove, one at a time, the candidate whose removal (with those already removed)
    changes the outputs least."""
    reference = reference_outputs(model, batches)
    influence = _alone(model, batches, reference, candidates)
    removed: list[str] = []
    scores = influence
    while True:
        best = min(scores, key=lambda n: scores[n])
        removed.append(best)
        log.info("depth: removing %s (output change %.4g)", best, scores[best])
        if len(removed) == count:
            return Selection(removed, influence, scores[best])
        scores = {name: output_change(model, batches, reference, [*removed, name])
                  for name in candidates if name not in removed}


def select_blocks(model: nn.Module, candidates: list[str], count: int, selection: str,
                  batches: Sequence[Any] | None) -> Selection:
    """Choose ``count`` of ``candidates`` (``1 <= count <= len(candidates)``).

    Args:
        model: the model (not changed).
        candidates: removable blocks in forward order.
        count: how many to remove.
        selection: ``"greedy"``, ``"oneshot"`` or ``"last"``.
        batches: calibration batches (unused for ``"last"``).

    Returns:
        The :class:`Selection`.
    """
    if selection == "last":
        return Selection(candidates[len(candidates) - count:])
    assert batches is not None, "measured selections need calibration batches"
    choose = select_greedy if selection == "greedy" else select_oneshot
    return choose(model, candidates, count, batches)
