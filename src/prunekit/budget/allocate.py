"""How many channels each group keeps under a cost budget: a greedy on value per unit cost.

Every group may keep a few widths (full, then multiples of the ``round_to`` step down to
its least, or for latency the widths of the measured table). Within a group channels go
lowest importance first. Across groups, the greedy repeatedly takes the cut whose loss of
value per unit of cost saved is smallest, until the cost fits the budget; it then spends
what is left of the budget on the most valuable cuts to undo, and widens a group wherever
that costs nothing (a width the table shows slower than a wider one is never kept).

A group's value is ``layers * size * log(kept importance)``: its channels' importance
relative to the group's mean, weighted by the number of layers producing the group (a
channel written by four residual blocks carries four layers' worth of importance, as its
score sums them). A group losing its weakest channels loses little, and each further
channel weighs more as the group thins. Cost alone would still thin the groups whose
channels cost most (a bottleneck feeding many layers) to a channel or two, so no group is
cut below half the width that uniform ratio pruning meeting the same budget gives it
(:data:`UNIFORM_FLOOR`). Costs are recomputed exactly after every cut (a cut changes its
neighbours' costs); the heap is lazy, since a cut only ever makes the other cuts' savings
smaller.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..select.structured import GroupChoice, kept_widths, layer_width, removal_order
from .costs import CostModel

MAX_CUTS_PER_GROUP = 64  # ratio pruning's step is kept; wide groups move in coarser steps
UNIFORM_FLOOR = 0.5  # no group keeps less than this share of its uniform-pruning width


@dataclass
class _GroupState:
    """One group during allocation."""

    group: GroupChoice
    order: torch.Tensor  # channel ids in the order they go
    widths: list[int]  # allowed kept widths, widest first
    quality: np.ndarray  # importance relative to the group mean, in removal order
    dims: list[int]  # member dims the group's channels touch
    cumulative: np.ndarray  # (len(order) + 1, len(dims)) indices removed along the order
    total_value: float  # summed quality of all its channels (frozen ones included)
    position: int = 0  # index into widths
    last: int = 0  # the narrowest position the greedy may reach (the floor)
    kept_value: float = 0.0  # summed quality of the kept channels
    version: int = 0

    @property
    def size(self) -> int:
        return int(self.group.channels.numel())

    @property
    def kept(self) -> int:
        return self.widths[self.position]

    def gone(self, width: int) -> int:
        """Channels of the order removed at ``width``."""
        return self.size - width


def coarse(widths: list[int], most: int = MAX_CUTS_PER_GROUP) -> list[int]:
    """At most ``most + 1`` of the allowed widths (evenly spaced, full and least kept)."""
    if len(widths) <= most + 1:
        return widths
    stride = math.ceil((len(widths) - 1) / most)
    chosen = widths[::stride]
    return chosen if chosen[-1] == widths[-1] else [*chosen, widths[-1]]


def on_grid(widths: list[int], fractions: Sequence[float]) -> list[int]:
    """The allowed widths nearest to each fraction of the full width (full and least kept)."""
    full = widths[0]
    chosen = {widths[0], widths[-1]}
    for fraction in fractions:
        chosen.add(min(widths, key=lambda w: (abs(w - fraction * full), -w)))
    return sorted(chosen, reverse=True)


class Allocation:
    """The greedy over groups. Build it, then :meth:`run` it for a budget.

    Args:
        groups: the groups (frozen channels and per-group overrides included).
        scores: ``(num_channels,)`` importance, higher = keep.
        cost: the cost model of the analysis the groups come from.
        round_to / min_channels: as for ratio pruning.
        fractions: for a latency table, the fractions of full width it measured (the
            group widths are snapped to them); None for params and MACs.
    """

    def __init__(self, groups: list[GroupChoice], scores: torch.Tensor, cost: CostModel, *,
                 round_to: int = 1, min_channels: int = 1,
                 fractions: Sequence[float] | None = None) -> None:
        self.cost = cost
        self.groups = groups
        self.round_to, self.min_channels = round_to, min_channels
        self.scores = scores.double().cpu()
        self.states: list[_GroupState] = []
        self.fixed = torch.zeros(scores.numel(), dtype=torch.bool)
        for group in groups:
            widths = kept_widths(group, round_to, min_channels)
            if group.sparsity is not None:  # an override fixes the group's width
                share = math.floor(group.sparsity * widths[0] + 1e-9)
                keep = min((w for w in widths if w >= widths[0] - share), default=widths[0])
                self.fixed[removal_order(group, self.scores)[: widths[0] - keep]] = True
                continue
            widths = coarse(widths) if fractions is None else on_grid(widths, fractions)
            if len(widths) > 1:
                self.states.append(self._state(group, widths))

    def _state(self, group: GroupChoice, widths: list[int]) -> _GroupState:
        order = removal_order(group, self.scores)
        free = self.scores[order]
        mean = float(free.mean()) if free.numel() else 1.0
        scale = mean if mean > 0 else 1.0
        quality = (self.scores[group.channels] / scale).clamp(min=0).numpy() + 1e-9
        in_order = (free / scale).clamp(min=0).numpy() + 1e-9
        owned = self.cost.owned
        rank = np.full(self.scores.numel(), -1)
        rank[order.numpy()] = np.arange(order.numel())
        rows = owned[rank[owned[:, 0]] >= 0]
        dims = sorted(set(rows[:, 1].tolist()))
        column = np.zeros(len(self.cost.members), dtype=np.int64)
        column[dims] = np.arange(len(dims))
        steps = np.zeros((order.numel() + 1, len(dims)))
        np.add.at(steps, (rank[rows[:, 0]] + 1, column[rows[:, 1]]), rows[:, 2])
        return _GroupState(group, order, widths, in_order, dims,
                           np.cumsum(steps, axis=0), float(quality.sum()))

    # --- one cut ----------------------------------------------------------------------
    def _saving(self, state: _GroupState, widths: np.ndarray, target: int) -> float:
        """Cost saved by moving ``state`` from its width to ``target`` (may be <= 0)."""
        delta = (state.cumulative[state.gone(target)]
                 - state.cumulative[state.gone(state.kept)])
        after = widths.copy()
        after[state.dims] -= delta
        terms = {t for d in state.dims for t in self.cost.member_terms[d]}
        return sum(self.cost.terms[t].value(widths) - self.cost.terms[t].value(after)
                   for t in terms)

    def _value(self, state: _GroupState, target: int) -> float:
        """Value lost by moving ``state`` down to ``target``."""
        lost = float(state.quality[state.gone(state.kept): state.gone(target)].sum())
        left = state.kept_value - lost
        if left <= 0:
            return math.inf
        return state.size * state.group.weight * (math.log(state.kept_value) - math.log(left))

    def _next_cut(self, state: _GroupState, widths: np.ndarray) -> tuple[float, int] | None:
        """(loss per unit saved, target position) of the group's next cut that saves."""
        for position in range(state.position + 1, state.last + 1):
            saving = self._saving(state, widths, state.widths[position])
            if saving > 0:
                return self._value(state, state.widths[position]) / saving, position
        return None

    def _apply(self, state: _GroupState, widths: np.ndarray, position: int) -> None:
        target = state.widths[position]
        delta = (state.cumulative[state.gone(target)]
                 - state.cumulative[state.gone(state.kept)])
        state.kept_value -= float(state.quality[state.gone(state.kept): state.gone(target)].sum())
        widths[state.dims] -= delta
        state.position = position
        state.version += 1

    # --- the whole greedy --------------------------------------------------------------
    def start(self) -> np.ndarray:
        """Member widths with only the fixed (overridden) removals applied."""
        for state in self.states:
            state.position, state.version, state.kept_value = 0, 0, state.total_value
            state.last = len(state.widths) - 1
        return self.cost.widths(self.fixed)

    def uniform(self, budget: float) -> dict[int, int]:
        """Per group (by index), the width uniform layer-scope ratio pruning keeps at the
        smallest sparsity that fits ``budget`` (bisection; the least widths if none fits)."""

        def widths_at(sparsity: float) -> dict[int, int]:
            return {i: layer_width(s.group, sparsity, self.round_to, self.min_channels)
                    for i, s in enumerate(self.states)}

        def fits(kept: dict[int, int]) -> bool:
            removed = self.fixed.clone()
            for i, state in enumerate(self.states):
                removed[state.order[: state.gone(kept[i])]] = True
            return self.cost.cost(removed) <= budget

        low, high = 0.0, 1.0 - 1e-9
        best = widths_at(high)
        for _ in range(24):
            middle = (low + high) / 2
            kept = widths_at(middle)
            if fits(kept):
                best, high = kept, middle
            else:
                low = middle
        return best

    def _set_floors(self, budget: float) -> None:
        for index, kept in self.uniform(budget).items():
            state = self.states[index]
            floor = UNIFORM_FLOOR * kept
            state.last = max((i for i, w in enumerate(state.widths) if w >= floor), default=0)

    def least(self) -> float:
        """The smallest cost reachable: every group at its least width, or, where a measured
        curve makes a narrower width dearer, the cheapest the greedy reaches (never more
        than the dense cost)."""
        widths = self.start()
        for state in self.states:
            self._apply(state, widths, len(state.widths) - 1)
        floor = self.cost.total(widths)
        if all(all(c is None for c in t.curves) for t in self.cost.terms):
            return floor  # costs grow with every width: the least widths are cheapest
        greedy = self.cost.cost(self._greedy(-math.inf, floors=False))
        return min(floor, greedy, self.cost.total(self.start()))

    def run(self, budget: float) -> torch.Tensor:
        """Cut until the cost is at most ``budget``; returns the removal mask.

        The caller checks ``budget >= least()`` first; a lower budget ends at the least.
        """
        removed = self._greedy(budget, floors=True)
        if self.cost.cost(removed) > budget:  # the floors' coarse widths did not fit
            removed = self._greedy(budget, floors=False)
        return removed

    def _greedy(self, budget: float, floors: bool) -> torch.Tensor:
        widths = self.start()
        if floors:
            self._set_floors(budget)
        total = self.cost.total(widths)
        heap: list[tuple[float, int, int, int]] = []
        for index in range(len(self.states)):
            self._push(heap, index, widths)
        while total > budget and heap:
            ratio, index, version, _ = heapq.heappop(heap)
            state = self.states[index]
            if version != state.version:
                continue
            fresh = self._next_cut(state, widths)
            if fresh is None:
                continue
            if heap and fresh[0] > heap[0][0] * (1 + 1e-12):
                state.version += 1
                heapq.heappush(heap, (fresh[0], index, state.version, fresh[1]))
                continue
            self._apply(state, widths, fresh[1])
            total = self.cost.total(widths)
            self._push(heap, index, widths)
        self._refill(widths, budget)
        return self.removed()

    def _push(self, heap: list[tuple[float, int, int, int]], index: int,
              widths: np.ndarray) -> None:
        cut = self._next_cut(self.states[index], widths)
        if cut is not None:
            heapq.heappush(heap, (cut[0], index, self.states[index].version, cut[1]))

    def _refill(self, widths: np.ndarray, budget: float) -> None:
        """Widen groups where it costs nothing, then, best value per cost first, where
        it still fits the budget."""
        while True:
            total = self.cost.total(widths)
            best: tuple[float, _GroupState] | None = None
            for state in self.states:
                if state.position == 0:
                    continue
                extra = -self._saving(state, widths, state.widths[state.position - 1])
                if extra <= 0:
                    best = (-math.inf, state)
                    break
                if total + extra <= budget:
                    price = extra / max(self._gain(state), 1e-300)
                    if best is None or price < best[0]:
                        best = (price, state)
            if best is None:
                return
            self._widen(best[1], widths)

    def _gain(self, state: _GroupState) -> float:
        back = state.widths[state.position - 1]
        regained = float(state.quality[state.gone(back): state.gone(state.kept)].sum())
        return state.size * state.group.weight * (math.log(state.kept_value + regained)
                                                  - math.log(state.kept_value))

    def _widen(self, state: _GroupState, widths: np.ndarray) -> None:
        back = state.widths[state.position - 1]
        delta = (state.cumulative[state.gone(state.kept)]
                 - state.cumulative[state.gone(back)])
        state.kept_value += float(state.quality[state.gone(back): state.gone(state.kept)].sum())
        widths[state.dims] += delta
        state.position -= 1
        state.version += 1

    def removed(self) -> torch.Tensor:
        """The removal mask of the current widths (overridden groups included)."""
        mask = self.fixed.clone()
        for state in self.states:
            mask[state.order[: state.gone(state.kept)]] = True
        return mask
