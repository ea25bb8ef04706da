"""Parameter, nonzero and MAC counts against hand-computed values."""

from __future__ import annotations

import torch
from torch import nn

import prunekit as pk
from prunekit.measure.counting import count_macs, count_nonzero_params, count_params


def test_counts_of_a_small_net() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    x = torch.randn(2, 3, 6, 6)
    assert count_params(model) == 8 * 27 + 128 * 5 + 5
    # conv: per output element 27 MACs, 2*8*4*4 outputs; linear: 2 * 128 * 5
    assert count_macs(model, x) == 2 * 8 * 16 * 27 + 2 * 128 * 5
    with torch.no_grad():
        model[0].weight[0].zero_()
    assert count_nonzero_params(model) == count_params(model) - 27


def test_masked_weights_count_their_zeros() -> None:
    result = pk.prune(nn.Linear(10, 10, bias=False), pk.Unstructured(sparsity=0.5))
    assert count_nonzero_params(result.model) == 50
    assert count_params(result.model) == 100


def test_structured_pruning_lowers_counts() -> None:
    model, x = pk.zoo.build("resnet"), pk.zoo.example_inputs("resnet")
    pruned = pk.prune(model, pk.Structured(sparsity=0.5), x).model
    assert count_params(pruned) < count_params(model) / 2
    assert count_macs(pruned, x) < count_macs(model, x) / 2
