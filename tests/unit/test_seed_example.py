"""The worked examples of docs/unstructured.md and docs/structured.md, reproduced exactly."""

from __future__ import annotations

import torch

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


def seed_linear() -> torch.nn.Linear:
    layer = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        layer.weight.copy_(SEED_MATRIX.t())  # nn.Linear stores (out, in)
    return layer


def test_unstructured_threshold_removes_exactly_what_the_rule_says() -> None:
    result = pk.prune(seed_linear(), pk.Unstructured(threshold=0.05))
    pruned = pk.finalize(result.model).weight.detach().t()
    expected = SEED_MATRIX.clone()
    expected[SEED_MATRIX.abs() < 0.05] = 0.0  # 0.01, 0.001, -0.02, 0.005 and 0.03
    assert torch.equal(pruned, expected)
    assert pruned[2, 3] == 0.0  # 0.03 is below the threshold: removed
    assert pruned[1, 1] == 0.05 and pruned[3, 0] == 0.05  # 0.05 itself stays
    assert int((pruned == 0).sum()) == 5
