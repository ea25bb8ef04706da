"""The params and MACs cost models equal count_params / count_macs of the actually cut model,
for any removal, on every zoo pattern (residual adds, concat, depthwise, SE, channel
shuffle, attention, flatten into Linear)."""

from __future__ import annotations

import pytest
import torch

import prunekit as pk
from prunekit.budget.costs import macs_cost, params_cost
from prunekit.graph.groups import analyze
from prunekit.measure.counting import count_macs, count_params
from prunekit.structured import remove_channels

ZOO = ["lenet", "vgg", "resnet", "densenet_block", "inverted_residual_se", "mobilenet_dw",
       "shufflenet_block", "vit_block", "mha_encoder", "mlp"]


@pytest.mark.parametrize("name", ZOO)
def test_cost_models_are_exact_for_random_removals(name: str) -> None:
    model, x = pk.zoo.build(name).eval(), pk.zoo.example_inputs(name)
    analysis = analyze(model, x)
    params, macs = params_cost(analysis, model), macs_cost(analysis, model, x)
    assert params.dense == count_params(model)
    assert macs.dense == count_macs(model, x)
    gen = torch.Generator().manual_seed(1)
    for share in (0.2, 0.6):
        removed = (torch.rand(analysis.num_channels, generator=gen) < share) & ~analysis.frozen
        for group in analysis.groups:  # never empty a group (surgery keeps one channel)
            if bool(removed[group.channels].all()):
                removed[group.channels[0]] = False
        cut = remove_channels(model, x, analysis, removed)
        assert params.cost(removed) == count_params(cut)
        assert macs.cost(removed) == pytest.approx(count_macs(cut, x), rel=1e-12)


def test_macs_no_weight_owns_are_held_constant() -> None:
    model, x = pk.zoo.build("vit_block").eval(), pk.zoo.example_inputs("vit_block")
    analysis = analyze(model, x)
    macs = macs_cost(analysis, model, x)
    assert macs.constant >= 0
    assert macs.cost(torch.zeros(analysis.num_channels, dtype=torch.bool)) == count_macs(model, x)
