"""Depth pruning end to end: shapes, training still works, the dead-branch oracle, plan replay,
save / load, channel pruning in the same call."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from depth_models import REMOVABLE, inputs, kill_branch, tiny_resnet
from torch import nn

import prunekit as pk
from prunekit.depth import DepthResult
from prunekit.specs import Depth


def params_of(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("selection", ["greedy", "oneshot", "last"])
def test_outputs_keep_their_shape_and_training_runs(selection: str) -> None:
    model, x = tiny_resnet(), inputs()
    result = pk.prune(model, Depth(blocks=2, selection=selection), x, calibration=[inputs(2)]
                      if selection != "last" else None)
    assert isinstance(result, DepthResult) and len(result.plan.removed_modules) == 2
    pruned = result.model.train()
    out = pruned(x)
    assert out.shape == model(x).shape
    out.square().mean().backward()
    grads = [p.grad for p in pruned.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    removed = [model.get_submodule(n) for n in result.plan.removed_modules]
    assert params_of(pruned) == params_of(model) - sum(params_of(b) for b in removed)


@pytest.mark.parametrize("selection", ["greedy", "oneshot"])
def test_blocks_with_a_dead_branch_are_chosen_and_removing_them_changes_nothing(
    selection: str,
) -> None:
    """Oracle: a block whose branch outputs 0 computes relu(x) = x on the non-negative
    outputs of a ReLU, so its influence is 0, it goes first, and outputs stay bit-equal."""
    model, x = tiny_resnet(), inputs()
    kill_branch(model.stages[1])
    kill_branch(model.stages[4])
    result = pk.prune(model, Depth(blocks=2, selection=selection), x, calibration=[inputs(2)])
    assert result.plan.removed_modules == ["stages.1", "stages.4"]
    assert result.influence["stages.1"] == 0.0 and result.influence["stages.4"] == 0.0
    assert min(v for k, v in result.influence.items() if k not in ("stages.1", "stages.4")) > 0
    assert result.change == 0.0
    with torch.no_grad():
        assert torch.equal(result.model(x), model(x))
        assert torch.equal(result.model(inputs(3)), model(inputs(3)))


def test_named_blocks_become_identity_and_last_takes_the_last_ones() -> None:
    model, x = tiny_resnet(), inputs()
    named = pk.prune(model, Depth(names=["stages.2", "stages.0"]), x)
    assert named.plan.removed_modules == ["stages.0", "stages.2"]  # forward order
    assert isinstance(named.model.stages[0], nn.Identity)
    assert isinstance(named.model.stages[1], type(model.stages[1]))
    assert not isinstance(model.stages[0], nn.Identity)  # the input model is left alone
    last = pk.prune(model, Depth(blocks=2, selection="last"), x)
    assert last.plan.removed_modules == REMOVABLE[-2:] and last.influence == {}


def test_inplace_changes_the_model_itself() -> None:
    model, x = tiny_resnet(), inputs()
    result = pk.prune(model, Depth(names=["stages.1"]), x, inplace=True)
    assert result.model is model and isinstance(model.stages[1], nn.Identity)


def test_a_replayed_plan_gives_the_same_model() -> None:
    model, x = tiny_resnet(), inputs()
    result = pk.prune(model, Depth(blocks=2), x, calibration=[inputs(2)])
    plan = pk.Plan.from_json(result.plan.to_json())
    replayed = pk.apply_plan(tiny_resnet(), plan)
    with torch.no_grad():
        assert torch.equal(replayed(x), result.model(x))
    assert [n for n, _ in replayed.named_modules()] == [
        n for n, _ in result.model.named_modules()]


@pytest.mark.parametrize("channels", [None, pk.Structured(sparsity=0.5)])
def test_save_and_load_give_identical_outputs(tmp_path: Path,
                                              channels: pk.Structured | None) -> None:
    model, x = tiny_resnet(), inputs()
    result = pk.prune(model, Depth(blocks=2, channels=channels), x, calibration=[inputs(2)])
    folder = pk.save(result, tmp_path / "depth")
    loaded = pk.load(folder, build=tiny_resnet)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), result.model.eval()(x))
    assert sum(p.numel() for p in loaded.parameters()) == params_of(result.model)


def test_channels_are_pruned_in_the_same_call() -> None:
    model, x = tiny_resnet(), inputs()
    result = pk.prune(model, Depth(blocks=1, channels=pk.Structured(sparsity=0.5)), x,
                      calibration=[inputs(2)])
    assert isinstance(result, DepthResult) and result.channels is not None
    assert len(result.plan.removed_modules) == 1 and result.plan.kept
    assert result.model.fc.in_features == 8  # 16 -> 8 channels into the head
    assert result.plan.spec["channels"]["sparsity"] == 0.5
    assert result.model(x).shape == (2, 5)
    assert result.summary().params_before == params_of(model)


def test_zoo_models_blocks_removed_and_run() -> None:
    for name, count in (("vit_block", 1), ("inverted_residual_se", 2), ("fmnist_resnet", 2)):
        model, x = pk.zoo.build(name).eval(), pk.zoo.example_inputs(name)
        result = pk.prune(model, Depth(blocks=count), x, calibration=[x])
        assert result.model(x).shape == model(x).shape, name
