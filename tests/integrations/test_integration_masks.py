"""The framework-free parts of the integrations: masks rebuilt from a state dict, the
loading hook, zeros behind masks, the schedule's resume point."""

from __future__ import annotations

import doctest

import pytest
import torch
from integration_models import masks_of, tiny_net
from torch import nn

import prunekit as pk
from prunekit.integrations import masks as masks_module
from prunekit.integrations.control import PruningControl
from prunekit.integrations.masks import (
    MaskLoading,
    mask_sparsity,
    masks_from_state_dict,
    zero_behind_masks,
)
from prunekit.recover import GradualSchedule


def test_docstring_examples_pass() -> None:
    failed, attempted = doctest.testmod(masks_module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failed == 0


def test_a_dense_model_loads_a_masked_state_dict_exactly() -> None:
    masked = tiny_net()
    pk.prune(masked, pk.Unstructured(sparsity=0.7, scope="global"), inplace=True)
    saved = masked.state_dict()
    fresh = tiny_net()
    loading = MaskLoading()
    loading.attach(fresh)
    loading.attach(fresh)  # attaching twice stacks nothing
    assert len(fresh._load_state_dict_pre_hooks) == 1
    fresh.load_state_dict(saved)  # strict: every key found
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in saved.items())
    x = torch.randn(2, 1, 6, 6)
    torch.testing.assert_close(fresh.eval()(x), masked.eval()(x), rtol=0, atol=0)
    loading.detach()
    assert not fresh._load_state_dict_pre_hooks


def test_mismatched_or_unknown_masks_are_left_to_load_state_dict() -> None:
    model = nn.Sequential(nn.Linear(4, 2))
    state = {"0.weight_orig": torch.ones(3, 4), "0.weight_mask": torch.ones(3, 4) > 0,
             "9.weight_orig": torch.ones(1), "9.weight_mask": torch.ones(1) > 0}
    assert masks_from_state_dict(model, state) == []
    assert not masks_of(model.state_dict())
    with pytest.raises(RuntimeError, match="weight_orig"):
        model.load_state_dict(state)


def test_zero_behind_masks_touches_only_hidden_values() -> None:
    model = tiny_net()
    pk.prune(model, pk.Unstructured(sparsity=0.5), inplace=True)
    layer = model[4]
    with torch.no_grad():
        layer.weight_orig.add_(1.0)  # what momentum or weight decay could do
    kept = layer.weight_orig[layer.weight_mask].clone()
    zero_behind_masks(model)
    assert not bool(layer.weight_orig[~layer.weight_mask].any())
    assert torch.equal(layer.weight_orig[layer.weight_mask], kept)
    assert mask_sparsity(model) == pytest.approx(0.5, abs=1 / 36)


def test_resume_point_of_a_schedule_is_the_sparsity_of_its_last_update() -> None:
    schedule = GradualSchedule(final_sparsity=0.8, end_fraction=0.5, every=2)
    control = PruningControl(pk.Unstructured(sparsity=0.8), schedule=schedule)
    control.resume_from_schedule(step=5, total=10)  # updates at 2, 4, 5: the last before is 4
    assert control.pruner is not None
    assert control.pruner.current == pytest.approx(schedule.sparsity_at(4, 10))
    assert control.mode == "gradual"
    assert PruningControl().mode == "keep"
    assert PruningControl(pk.NM(2, 4)).mode == "one-shot"
