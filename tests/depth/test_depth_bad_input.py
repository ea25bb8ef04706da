"""Bad input to depth pruning: typed errors naming the problem, before the model is touched."""

from __future__ import annotations

import pytest
import torch
from depth_models import inputs, tiny_resnet
from torch import nn

import prunekit as pk
from prunekit.specs import Depth


def snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    return {k: v.clone() for k, v in model.state_dict().items()}, [
        repr(m) for m in model.modules()]


def assert_untouched(model: nn.Module, before: tuple[dict[str, torch.Tensor], list[str]]) -> None:
    state, reprs = before
    now = model.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)
    assert [repr(m) for m in model.modules()] == reprs


@pytest.mark.parametrize("inplace", [False, True])
def test_more_blocks_than_removable(inplace: bool) -> None:
    model = tiny_resnet()
    before = snapshot(model)
    with pytest.raises(pk.TargetError) as info:
        pk.prune(model, Depth(blocks=5), inputs(), calibration=[inputs()], inplace=inplace)
    assert "blocks=5" in info.value.message and "4 removable" in info.value.message
    assert "stages.0, stages.1, stages.2, stages.4" in info.value.message
    assert_untouched(model, before)


@pytest.mark.parametrize("name, words", [
    ("stages.3", "differs from its input"),  # downsampling block
    ("stages.0.conv1", "inside the removable block 'stages.0'"),
    ("stages", "container"),
    ("fc", "single Linear layer"),
    ("stages.9", "is not a module"),
])
@pytest.mark.parametrize("inplace", [False, True])
def test_named_module_that_is_not_a_removable_block(name: str, words: str,
                                                    inplace: bool) -> None:
    model = tiny_resnet()
    before = snapshot(model)
    with pytest.raises(pk.TargetError) as info:
        pk.prune(model, Depth(names=["stages.0", name]), inputs(), inplace=inplace)
    assert repr(name) in info.value.message and words in info.value.message
    assert "removable here: stages.0, stages.1, stages.2, stages.4" in str(info.value)
    assert_untouched(model, before)


def test_missing_example_inputs_and_unused_arguments() -> None:
    model = tiny_resnet()
    with pytest.raises(pk.ExampleInputError, match="example_inputs"):
        pk.prune(model, Depth(blocks=1), calibration=[inputs()])
    with pytest.raises(pk.SpecError, match="calibration="):
        pk.prune(model, Depth(names=["stages.0"]), inputs(), calibration=[inputs()])
    with pytest.raises(pk.SpecError, match="calibration="):
        pk.prune(model, Depth(blocks=1, selection="last"), inputs(), calibration=[inputs()])
    with pytest.raises(pk.SpecError, match="overrides="):
        pk.prune(model, Depth(blocks=1), inputs(), overrides={"fc": 0.5})
    with pytest.raises(pk.TargetError, match="nope"):
        pk.prune(model, Depth(blocks=1), inputs(), ignore=["nope"])


def test_bad_calibration_is_refused() -> None:
    with pytest.raises(pk.CalibrationError):
        pk.prune(tiny_resnet(), Depth(blocks=1), inputs(), calibration=[])


def test_apply_plan_refuses_a_plan_that_does_not_fit() -> None:
    x = inputs()
    plan = pk.prune(tiny_resnet(), Depth(names=["stages.1"]), x).plan
    other = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(pk.PlanError, match="'stages.1': no such module"):
        pk.apply_plan(other, plan)
    plan.removed_modules = ["stages.3"]
    with pytest.raises(pk.PlanError, match="stages.3"):
        pk.apply_plan(tiny_resnet(), plan)
    both = pk.prune(tiny_resnet(), Depth(names=["stages.1"], channels=pk.Structured(
        sparsity=0.5)), x).plan
    with pytest.raises(pk.PlanError, match="pk.load"):
        pk.apply_plan(tiny_resnet(), both)


def test_a_failing_channel_step_leaves_an_inplace_model_as_it_was() -> None:
    """The channel step runs after the blocks went; its typed error must undo them."""
    model = tiny_resnet()
    before = snapshot(model)
    spec = Depth(names=["stages.0"], channels=pk.Structured(sparsity=0.5))
    with pytest.raises(pk.TargetError, match="stages.0.conv1"):
        pk.prune(model, spec, inputs(), overrides={"stages.0.conv1": 0.3}, inplace=True)
    assert_untouched(model, before)
    assert isinstance(model.stages[0], type(model.stages[1]))
