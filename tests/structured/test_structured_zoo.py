"""Structured pruning of every zoo model: shapes, gradients, counts, exact dead channels."""

from __future__ import annotations

import pytest
import torch
from structured_oracles import check_pruned, dead_channel_equivalence, outputs

import prunekit as pk

NAMES = pk.zoo.names()
# A layer per model, to check that ignored layers keep their values (None: the MLP has no
# layer whose ignoring leaves anything to prune: its last hidden width feeds the classifier).
IGNORE: dict[str, str | None] = {
    "densenet_block": "dense.1.conv", "fmnist_resnet": "stages.1.0.conv1",
    "gpt_block": "blocks.0.fc1", "inverted_residual_se": "1.expand.0", "lenet": "features.0",
    "mha_encoder": "inp", "mlp": None, "mobilenet_dw": "2.3", "resnet": "stages.1.0.conv1",
    "shufflenet_block": "2.branch2.0", "transformer": "blocks.1.fc1", "vgg": "3.0",
    "vit_block": "blocks.0.fc1",
}


def test_every_zoo_model_has_an_ignore_case() -> None:
    assert set(IGNORE) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sparsity", [0.3, 0.5])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_zoo_prune_keeps_outputs_and_shrinks(name: str, sparsity: float, scope: str) -> None:
    model, x = pk.zoo.build(name), pk.zoo.example_inputs(name)
    ignore = [IGNORE[name]] if IGNORE[name] else []
    check_pruned(model, x, pk.Structured(sparsity=sparsity, scope=scope), ignore)


@pytest.mark.parametrize("name", NAMES)
def test_zoo_round_to_gives_multiples(name: str) -> None:
    model, x = pk.zoo.build(name), pk.zoo.example_inputs(name)
    check_pruned(model, x, pk.Structured(sparsity=0.5, round_to=8), [])


@pytest.mark.parametrize("name", NAMES)
def test_zoo_dead_channels_are_removed_exactly(name: str) -> None:
    torch.manual_seed(1)
    removed = dead_channel_equivalence(pk.zoo.build(name), pk.zoo.example_inputs(name))
    if name not in ("mha_encoder",):  # its only free group is the MLP hidden (LayerNorm-free)
        assert removed > 0
    else:
        assert removed >= 0


@pytest.mark.parametrize("name", NAMES)
def test_zoo_sparsity_zero_is_an_exact_no_op(name: str) -> None:
    model, x = pk.zoo.build(name), pk.zoo.example_inputs(name)
    result = pk.prune(model, pk.Structured(sparsity=0.0), x)
    assert result.plan.kept == {} and result.plan.attributes == {}
    before, after = model.state_dict(), result.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    for want, have in zip(outputs(model, x), outputs(result.model, x), strict=True):
        assert torch.equal(want, have)
