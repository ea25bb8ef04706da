"""The plan rebuilds the pruned architecture from the original factory, for strict loading."""

from __future__ import annotations

import pytest
import torch

import prunekit as pk
from prunekit.apply.surgery import rebuild_pruned_architecture
from prunekit.plan import Plan


@pytest.mark.parametrize("name", ["resnet", "gpt_block", "mobilenet_dw", "densenet_block",
                                  "shufflenet_block", "vit_block"])
def test_rebuild_then_strict_load_gives_the_same_model(name: str) -> None:
    x = pk.zoo.example_inputs(name)
    result = pk.prune(pk.zoo.build(name), pk.Structured(sparsity=0.5), x)
    plan = Plan.from_json(result.plan.to_json())  # through JSON, as a loader sees it
    fresh = rebuild_pruned_architecture(pk.zoo.build(name, seed=7), plan)
    fresh.load_state_dict(result.model.state_dict(), strict=True)
    fresh.eval()
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), result.model(x))
    for module_name, attrs in plan.attributes.items():
        module = fresh.get_submodule(module_name)
        for attr, value in attrs.items():
            current = getattr(module, attr)
            assert (list(current) if isinstance(current, tuple) else current) == value


def test_plan_records_shapes_kept_and_attributes() -> None:
    x = pk.zoo.example_inputs("resnet")
    result = pk.prune(pk.zoo.build("resnet"), pk.Structured(sparsity=0.5), x)
    plan = result.plan
    assert plan.spec["kind"] == "structured"
    assert plan.shapes["stem.0.weight"] == [8, 3, 3, 3]
    assert len(plan.kept["stem.0.weight"][0]) == 8
    assert plan.attributes["stem.0"] == {"out_channels": 8}
    assert plan.attributes["stem.1"] == {"num_features": 8}


def test_rebuild_rejects_another_architecture() -> None:
    result = pk.prune(pk.zoo.build("resnet"), pk.Structured(sparsity=0.5),
                      pk.zoo.example_inputs("resnet"))
    other = pk.zoo.build("vgg")
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(pk.PlanError, match="which the model does not have"):
        rebuild_pruned_architecture(other, result.plan)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in before.items())
