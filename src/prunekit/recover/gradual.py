"""Gradual magnitude pruning during fine-tuning (Zhu & Gupta's cubic sparsity schedule).

Instead of pruning to the target at once and then fine-tuning, the masks grow during the
run: the sparsity ramps from ``initial_sparsity`` to ``final_sparsity`` along
``s(t) = final + (initial - final) * (1 - t)**3`` between ``start_fraction`` and
``end_fraction`` of the steps, the model is re-pruned every ``every`` steps (pruning a
masked model only ever removes more), and the rest of the run trains with the final masks
fixed. The network adapts while the weights go, which recovers far more accuracy at high
sparsity than one-shot pruning with the same number of steps.

Example:
    >>> schedule = GradualSchedule(final_sparsity=0.9, end_fraction=0.6, every=16)
    >>> pruner = GradualPruner(schedule, lambda s: pk.Unstructured(sparsity=s))
    >>> finetune(model, loader, RecoveryConfig(epochs=1), pruner=pruner)  # masks grow to 90%
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from torch import nn

from ..errors import SpecError
from ..specs import NM, Unstructured
from ..targets import IgnoreEntry, ignore_entries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GradualSchedule:
    """When and how far to prune during a run of ``total`` steps.

    Attributes:
        final_sparsity: the sparsity reached at ``end_fraction`` and kept to the end.
        initial_sparsity: the sparsity applied before the first step (0: start dense).
        start_fraction: fraction of the steps before the ramp starts.
        end_fraction: fraction of the steps at which the final sparsity is reached.
        every: steps between two mask updates during the ramp.
    """

    final_sparsity: float
    initial_sparsity: float = 0.0
    start_fraction: float = 0.0
    end_fraction: float = 0.6
    every: int = 16

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.final_sparsity < 1:
            problems.append(f"final_sparsity={self.final_sparsity} (must be in (0, 1))")
        if not 0 <= self.initial_sparsity <= self.final_sparsity:
            problems.append(f"initial_sparsity={self.initial_sparsity} (must be in "
                            f"[0, final_sparsity])")
        if not 0 <= self.start_fraction < self.end_fraction <= 1:
            problems.append(f"start_fraction={self.start_fraction}, end_fraction="
                            f"{self.end_fraction} (need 0 <= start < end <= 1)")
        if self.every < 1:
            problems.append(f"every={self.every} (must be >= 1)")
        if problems:
            raise SpecError("bad gradual schedule: " + "; ".join(problems))

    def _window(self, total: int) -> tuple[int, int]:
        begin = math.floor(self.start_fraction * total)
        end = max(begin + 1, math.ceil(self.end_fraction * total))
        return begin, end

    def sparsity_at(self, step: int, total: int) -> float:
        """The scheduled sparsity at ``step`` of ``total`` (cubic ramp, then constant)."""
        begin, end = self._window(total)
        if step <= begin:
            return self.initial_sparsity
        progress = min(1.0, (step - begin) / (end - begin))
        span = self.final_sparsity - self.initial_sparsity
        return self.final_sparsity - span * (1.0 - progress) ** 3

    def update_steps(self, total: int) -> list[int]:
        """The steps (0-based, before the step runs) at which masks are recomputed.

        Every ``every`` steps after the ramp starts, and the step the ramp ends (the initial
        sparsity is applied before the first step).
        """
        begin, end = self._window(total)
        steps = list(range(begin + self.every, min(end, total), self.every))
        if end not in steps:
            steps.append(min(end, max(0, total - 1)))
        return sorted(set(steps))


SpecFactory = Callable[[float], Unstructured | NM]


class Pruner(Protocol):
    """What :func:`~prunekit.recover.finetune` calls to prune during training."""

    def start(self, model: nn.Module, total: int) -> None:
        """Prepare ``model`` before the first of ``total`` steps."""

    def __call__(self, model: nn.Module, step: int, total: int) -> bool:
        """Act before ``step``; returns whether the model changed."""


class GradualPruner:
    """Re-prunes a model in place on the steps of a :class:`GradualSchedule`.

    Hand it to :func:`~prunekit.recover.finetune` (``pruner=``) or
    :class:`~prunekit.recover.RecoveryStep`, or call it yourself before each step:
    ``pruner(model, step, total)``. The trainable tensors stay the same Parameter objects
    (masking renames ``weight`` to ``weight_orig``), so an optimiser built before the first
    mask keeps working.

    Args:
        schedule: when and how far to prune.
        spec: builds the spec for a sparsity, e.g. ``lambda s: Unstructured(sparsity=s)``
            (global magnitude by default); its sparsity is the total over the targeted layers.
        ignore: module names, types or compiled regexes to leave dense (as in
            :func:`prunekit.prune`).
    """

    def __init__(
        self, schedule: GradualSchedule, spec: SpecFactory, ignore: Iterable[IgnoreEntry] = ()
    ) -> None:
        self.schedule = schedule
        self.spec = spec
        self.ignore = ignore_entries(ignore)
        self.current = 0.0
        self.updates = 0
        self._due: set[int] = set()
        self._total = -1

    def start(self, model: nn.Module, total: int) -> None:
        """Apply the initial sparsity (if any) before training starts."""
        self._total = total
        self._due = set(self.schedule.update_steps(total))
        if self.schedule.initial_sparsity > 0:
            self._prune(model, self.schedule.initial_sparsity)

    def __call__(self, model: nn.Module, step: int, total: int) -> bool:
        """Re-prune ``model`` if ``step`` is an update step; returns whether it pruned."""
        if total != self._total:
            self.start(model, total)
        if step not in self._due:
            return False
        target = self.schedule.sparsity_at(step, total)
        if target <= self.current:
            return False
        self._prune(model, target)
        return True

    def _prune(self, model: nn.Module, sparsity: float) -> None:
        from ..api import prune  # late: prunekit.api imports this package indirectly

        prune(model, self.spec(sparsity), ignore=self.ignore, inplace=True)
        self.current = sparsity
        self.updates += 1
        log.debug("gradual pruning: sparsity %.4f", sparsity)
