"""The greedy allocation on small hand-made cost models: the budget is met, cheap importance
goes first, the ratio-pruning limits hold, and a width the table shows slower than a wider
one is never kept."""

from __future__ import annotations

import math

import numpy as np
import torch

from prunekit.budget.allocate import UNIFORM_FLOOR, Allocation, coarse, on_grid
from prunekit.budget.costs import CostModel, Curve, Term, ownership
from prunekit.graph.groups import Member
from prunekit.select.structured import GroupChoice


def member(key: str, channels: list[int]) -> Member:
    return Member(key, 0, torch.tensor(channels), "out")


def model_of(members: list[Member], terms: list[Term], constant: float = 0.0) -> CostModel:
    full = np.array([float(m.channel.numel()) for m in members])
    return CostModel("params", members, full, terms, constant, ownership(members), "parameters")


def choice(ids: list[int], frozen: tuple[int, ...] = (), unit: int = 1,
           sparsity: float | None = None) -> GroupChoice:
    return GroupChoice(torch.tensor(ids), torch.tensor([i in frozen for i in ids]), unit,
                       sparsity)


def two_groups(cost_a: float, cost_b: float, size: int = 16) -> tuple[list[GroupChoice],
                                                                      CostModel]:
    """Independent groups A (channels 0..size-1) and B, each channel costing cost_a / cost_b."""
    a = member("a.weight", list(range(size)))
    b = member("b.weight", list(range(size, 2 * size)))
    terms = [Term(cost_a, (0,), (None,)), Term(cost_b, (1,), (None,))]
    groups = [choice(list(range(size))), choice(list(range(size, 2 * size)))]
    return groups, model_of([a, b], terms, constant=5.0)


def kept(removed: torch.Tensor, group: GroupChoice) -> int:
    return int((~removed[group.channels]).sum())


def test_the_cost_fits_the_budget_and_expensive_channels_go_first() -> None:
    groups, cost = two_groups(10.0, 1.0)
    scores = torch.ones(32, dtype=torch.float64)
    budget = 0.6 * cost.dense
    removed = Allocation(groups, scores, cost).run(budget)
    assert cost.cost(removed) <= budget
    assert kept(removed, groups[0]) < kept(removed, groups[1])  # A's channels cost 10x


def test_importance_decides_between_equally_costly_groups() -> None:
    groups, cost = two_groups(1.0, 1.0)
    scores = torch.cat([torch.linspace(0.1, 2.0, 16), torch.ones(16)]).double()
    removed = Allocation(groups, scores, cost).run(0.7 * cost.dense)
    gone = removed[:16].nonzero().flatten().tolist()
    assert gone == list(range(len(gone)))  # lowest scores first within a group
    assert cost.cost(removed) <= 0.7 * cost.dense


def test_round_to_min_channels_and_frozen_channels_hold() -> None:
    groups, cost = two_groups(10.0, 1.0)
    groups[0] = choice(list(range(16)), frozen=(0, 1, 2))
    scores = torch.ones(32, dtype=torch.float64)
    allocation = Allocation(groups, scores, cost, round_to=4, min_channels=5)
    removed = allocation.run(0.05 * cost.dense)  # below the least: ends at the least
    assert not bool(removed[[0, 1, 2]].any())
    for group in groups:
        width = kept(removed, group)
        assert width % 4 == 0 and width >= 5
    assert cost.cost(removed) == allocation.least()


def test_an_override_fixes_its_group_and_the_rest_is_allocated() -> None:
    groups, cost = two_groups(1.0, 1.0)
    groups[1] = choice(list(range(16, 32)), sparsity=0.25)
    removed = Allocation(groups, torch.ones(32, dtype=torch.float64), cost).run(
        0.5 * cost.dense)
    assert kept(removed, groups[1]) == 12
    assert cost.cost(removed) <= 0.5 * cost.dense


def test_no_group_goes_below_half_its_uniform_width() -> None:
    groups, cost = two_groups(100.0, 1.0)
    allocation = Allocation(groups, torch.ones(32, dtype=torch.float64), cost)
    budget = 0.5 * cost.dense
    uniform = allocation.uniform(budget)
    removed = allocation.run(budget)
    for index, group in enumerate(groups):
        assert kept(removed, group) >= math.floor(UNIFORM_FLOOR * uniform[index])


def test_a_width_slower_than_a_wider_one_is_never_kept() -> None:
    # one group of 8 whose cost curve is slower at 6 and 7 channels than at 8
    curve = Curve((1, 2, 3, 4, 5, 6, 7, 8), (0.2, 0.3, 0.4, 0.5, 0.6, 1.3, 1.2, 1.0))
    cost = CostModel("latency", [member("a.weight", list(range(8)))], np.array([8.0]),
                     [Term(10.0, (0,), (curve,))], 1.0,
                     ownership([member("a.weight", list(range(8)))]), "ms")
    fractions = [i / 8 for i in range(7, 0, -1)]
    for budget in (10.9, 11.0, 12.5, 13.5):
        removed = Allocation([choice(list(range(8)))], torch.ones(8, dtype=torch.float64),
                             cost, fractions=fractions).run(budget)
        assert int((~removed).sum()) not in (6, 7)


def test_allowed_widths() -> None:
    assert coarse(list(range(200, 0, -1)), 10)[0] == 200
    assert coarse(list(range(200, 0, -1)), 10)[-1] == 1
    assert len(coarse(list(range(200, 0, -1)), 10)) <= 12
    assert on_grid(list(range(64, 3, -1)), (0.75, 0.5, 0.25)) == [64, 48, 32, 16, 4]
