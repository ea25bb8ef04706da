"""A budget from target to cut: cost model, reachability, allocation, measuring, re-cutting.

:class:`BudgetPlanner` is built while structured pruning validates its inputs (nothing is
changed then): it builds the cost model of the target's kind, refuses a target below the
least reachable cost, and turns groups into a removal mask for the budget. While the model is
cut, :meth:`BudgetPlanner.cut` measures what the cut achieved (parameters, MACs, and for a
latency target the pruned model against the dense one) and, when the measurement misses the
request by more than the tolerance, undoes the cut and cuts again with the budget scaled by
the miss (at most :data:`MAX_REFINEMENTS` times).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from ..errors import TargetError
from ..graph.groups import Analysis
from ..inputs import ExampleInputs
from ..measure.counting import count_macs, count_params
from ..pipeline import ModelSnapshot
from ..select.structured import GroupChoice
from .allocate import Allocation
from .costs import CostModel, macs_cost, params_cost
from .latency_cost import ALLOCATION_FRACTIONS, TableStats, latency_cost
from .report import BudgetReport, LatencyFigures
from .targets import BudgetTarget, Latency
from .timing import PairTiming, batch_size, batched, time_pair, timing_copy

log = logging.getLogger(__name__)
MAX_REFINEMENTS = 2
# re-cut when a latency measurement misses the request, or a count the estimate, by more
TOLERANCE = {"params": 0.005, "macs": 0.005, "latency": 0.05}
MISSED = {"params": 0.02, "macs": 0.02, "latency": 0.10}  # the report notes a miss beyond
T = TypeVar("T")


@dataclass
class _Measured:
    params: int
    macs: int
    timing: PairTiming | None

    def fraction(self, kind: str, dense: _Measured) -> float:
        if kind == "params":
            return self.params / dense.params
        if kind == "macs":
            return self.macs / dense.macs
        assert self.timing is not None
        return self.timing.ratio


class BudgetPlanner:
    """Cost model, reachability check and allocation for one budgeted call.

    Args:
        target: the budget.
        model: the dense model (read only).
        analysis: its channels.
        example_inputs: inputs it accepts.
        scores: channel importance.
        choices: the groups as selection sees them.
        round_to / min_channels: the spec's limits.

    Raises:
        TargetError: the target is below what the frozen, ignored and protected channels
            (and ``min_channels`` / ``round_to``) leave, naming the least reachable value.
    """

    def __init__(self, target: BudgetTarget, model: nn.Module, analysis: Analysis,
                 example_inputs: ExampleInputs, scores: torch.Tensor,
                 choices: list[GroupChoice], *, round_to: int, min_channels: int) -> None:
        self.target, self.kind = target, target.to_dict()["kind"]
        self.example_inputs, self.scores = example_inputs, scores
        self.round_to, self.min_channels = round_to, min_channels
        self.table: TableStats | None = None
        self.cost = self._cost(model, analysis)
        self.dense = _Measured(count_params(model), self._dense_macs(model), None)
        self.least = self.allocation(choices).least() / self.cost.dense
        self._refuse_unreachable(self.least)
        self.budget = target.fraction  # what the cost model is asked for (refined on a miss)
        self.report: BudgetReport | None = None

    def _cost(self, model: nn.Module, analysis: Analysis) -> CostModel:
        if isinstance(self.target, Latency):
            rows = batch_size(self.example_inputs)
            cost, self.table = latency_cost(analysis, model, self.example_inputs, rows,
                                            self.target)
            return cost
        if self.kind == "macs":
            return macs_cost(analysis, model, self.example_inputs)
        return params_cost(analysis, model)

    def _dense_macs(self, model: nn.Module) -> int:
        if self.kind == "macs":
            return round(self.cost.dense)
        return count_macs(model, self.example_inputs)

    def _refuse_unreachable(self, least: float, pinned: bool = False) -> None:
        fraction = self.target.fraction
        if fraction + 1e-9 >= least:
            return
        name = {"params": "Params", "macs": "MACs", "latency": "Latency"}[self.kind]
        what = ("by the table's estimate, the model keeps {:.4f} of its latency"
                if self.kind == "latency" else "the model keeps {:.4f} of its " + self.cost.unit)
        why = ("the channels its modules reshape with (found when the first cut failed to "
               "run) are pinned; " if pinned else "")
        raise TargetError(
            f"{name}({fraction}) cannot be met: {why}with every prunable group at its least width, "
            f"{what.format(least)} (frozen outputs, "
            "ignored layers, channels an op mixes, min_channels and round_to stay)",
            f"ask for {name}({_round_up(least)}) or more, or unfreeze layers "
            "(fewer ignore= entries, a smaller min_channels / round_to)",
        )

    def allocation(self, choices: list[GroupChoice]) -> Allocation:
        """The greedy over ``choices`` with this planner's cost model."""
        fractions = ALLOCATION_FRACTIONS if self.kind == "latency" else None
        return Allocation(choices, self.scores, self.cost, round_to=self.round_to,
                          min_channels=self.min_channels, fractions=fractions)

    def removed(self, choices: list[GroupChoice]) -> torch.Tensor:
        """The removal mask that fits the (current) budget."""
        allocation = self.allocation(choices)
        least = allocation.least() / self.cost.dense
        if least > self.least + 1e-12:  # a failed first cut pinned channels
            self._refuse_unreachable(least, pinned=True)
        return allocation.run(max(self.budget, least) * self.cost.dense)

    def estimate(self, removed: torch.Tensor) -> float:
        """The cost model's fraction once ``removed`` is gone."""
        return self.cost.cost(removed) / self.cost.dense

    # --- cutting -----------------------------------------------------------------------
    def cut(self, work: nn.Module, cut_once: Callable[[], T],
            removed_of: Callable[[T], torch.Tensor]) -> T:
        """Cut ``work`` with ``cut_once``, measure, and re-cut on a miss.

        Args:
            work: the model being pruned (cut in place by ``cut_once``).
            cut_once: cuts ``work`` for the current budget; returns the decision.
            removed_of: the removal mask of a decision.

        Returns:
            The decision of the last cut; :attr:`report` holds the figures.
        """
        snapshot = ModelSnapshot(work)
        dense_timing = self._timing_model(work)
        refinements = 0
        while True:
            decision = cut_once()
            measured = self._measure(work, dense_timing)
            achieved = measured.fraction(self.kind, self.dense)
            estimate = self.estimate(removed_of(decision))
            if not self._missed(achieved, estimate) or refinements == MAX_REFINEMENTS:
                break
            log.info("budget %s: achieved %.4f (estimated %.4f) for %.4f requested; cutting "
                     "again", self.kind, achieved, estimate, self.target.fraction)
            snapshot.restore()
            self.budget = self.target.fraction * estimate / achieved
            refinements += 1
        self.report = self._report(measured, self.estimate(removed_of(decision)), refinements)
        return decision

    def _missed(self, achieved: float, estimate: float) -> bool:
        """A latency measurement off the request, or a params / MACs count off the cost
        model's estimate (the model is exact where weights alone decide the cost)."""
        if self.kind == "latency":
            return abs(achieved / self.target.fraction - 1.0) > TOLERANCE[self.kind]
        return abs(achieved / estimate - 1.0) > TOLERANCE[self.kind]

    def _timing_model(self, work: nn.Module) -> nn.Module | None:
        if not isinstance(self.target, Latency):
            return None
        return timing_copy(work, torch.device(self.target.device), self.target.dtype)

    def _measure(self, work: nn.Module, dense_timing: nn.Module | None) -> _Measured:
        timing = None
        if dense_timing is not None and isinstance(self.target, Latency):
            device = torch.device(self.target.device)
            inputs = batched(self.example_inputs, self.target.batch, device, self.target.dtype)
            pruned = timing_copy(work, device, self.target.dtype)
            timing = time_pair(dense_timing, pruned, inputs, self.target)
        return _Measured(count_params(work), count_macs(work, self.example_inputs), timing)

    def _report(self, measured: _Measured, estimate: float, refinements: int) -> BudgetReport:
        latency = None
        notes: list[str] = []
        if measured.timing is not None and isinstance(self.target, Latency):
            assert self.table is not None
            timing = measured.timing
            latency = LatencyFigures(
                timing.dense_ms, timing.pruned_ms, timing.rounds, self.target.batch,
                self.target.device, self.target.dtype_name,
                self.target.threads or torch.get_num_threads(), self.table.calls,
                self.table.points, self.table.timed, self.table.seconds)
        achieved = measured.fraction(self.kind, self.dense)
        if abs(achieved / self.target.fraction - 1.0) > MISSED[self.kind]:
            notes.append(f"missed: achieved {achieved:.4f} for {self.target.fraction} requested")
        return BudgetReport(self.target.to_dict(), self.dense.params, measured.params,
                            self.dense.macs, measured.macs, estimate, refinements, latency,
                            tuple(notes))


def _round_up(value: float) -> float:
    """``value`` rounded up to 3 decimals (a target that is surely reachable)."""
    return min(1.0, -(-round(value * 1000, 6) // 1) / 1000)


__all__ = ["BudgetPlanner", "MAX_REFINEMENTS", "MISSED", "TOLERANCE"]

