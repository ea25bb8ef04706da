"""Every zoo model builds deterministically, trains (forward + backward) and prunes."""

from __future__ import annotations

import pytest
import torch

import prunekit as pk
from prunekit.inputs import flat_tensors

EXPECTED = {"mlp", "lenet", "vgg", "resnet", "fmnist_resnet", "transformer"}


def test_zoo_registers_the_reference_models() -> None:
    assert set(pk.zoo.names()) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_zoo_model_builds_trains_and_prunes(name: str) -> None:
    model = pk.zoo.build(name)
    same = pk.zoo.build(name)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values(), strict=True))
    x = pk.zoo.example_inputs(name, batch=3)
    out = model(x)
    assert out.shape[0] == 3 and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    result = pk.prune(model, pk.Unstructured(sparsity=0.9, scope="global"), x)
    summary = result.summary()
    assert summary.targeted_numel - summary.targeted_nonzero == round(0.9 * summary.targeted_numel)
    pruned_out = flat_tensors(result.model(x))[0]
    assert pruned_out.shape == out.shape and torch.isfinite(pruned_out).all()
    pk.finalize(result.model)
    assert list(result.model.state_dict()) == list(model.state_dict())


def test_unknown_zoo_name_lists_the_choices() -> None:
    with pytest.raises(pk.TargetError, match="unknown zoo model 'alexnet'") as info:
        pk.zoo.build("alexnet")
    assert "lenet" in info.value.hint
