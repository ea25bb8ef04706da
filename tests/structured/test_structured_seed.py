"""The structured worked example of docs/structured.md: filter 3 (L1 sum 0.036) is removed
by a threshold."""

from __future__ import annotations

import torch
from torch import nn

import prunekit as pk

# Rows are inputs, columns are the four neurons / filters.
SEED_MATRIX = torch.tensor(
    [
        [0.1, -0.5, 0.01, 0.2],
        [-0.3, 0.05, 0.001, -0.4],
        [0.2, 0.1, -0.02, 0.03],
        [0.05, -0.2, 0.005, 0.1],
    ]
)


def seed_model() -> nn.Sequential:
    """The seed layer followed by a consumer of its four neurons."""
    first, second = nn.Linear(4, 4, bias=False), nn.Linear(4, 2)
    with torch.no_grad():
        first.weight.copy_(SEED_MATRIX.t())  # nn.Linear stores (out, in)
        second.weight.copy_(torch.arange(8.0).view(2, 4))
    return nn.Sequential(first, nn.ReLU(), second)


def test_filter_l1_sums_match_the_brief() -> None:
    sums = SEED_MATRIX.abs().sum(dim=0)
    torch.testing.assert_close(sums, torch.tensor([0.65, 0.85, 0.036, 0.73]))


def test_threshold_removes_filter_3_only() -> None:
    model = seed_model()
    result = pk.prune(model, pk.Structured(threshold=0.1), torch.randn(3, 4))
    first, second = result.model[0], result.model[2]
    pruned = first.weight.detach().t()  # back to rows = inputs
    assert tuple(pruned.shape) == (4, 3)
    assert torch.equal(pruned, SEED_MATRIX[:, [0, 1, 3]])  # columns 1, 2, 4 unchanged
    assert first.out_features == 3 and second.in_features == 3
    assert torch.equal(second.weight.detach(), torch.arange(8.0).view(2, 4)[:, [0, 1, 3]])
    assert result.plan.kept["0.weight"] == {0: [0, 1, 3]}
    assert result.plan.kept["2.weight"] == {1: [0, 1, 3]}


def test_threshold_below_every_filter_removes_nothing() -> None:
    result = pk.prune(seed_model(), pk.Structured(threshold=0.03), torch.randn(3, 4))
    assert result.model[0].weight.shape == (4, 4)
