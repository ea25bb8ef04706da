"""Channel fading: the schedule, exact equivalence with the cut model, bad plans refused."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit import zoo
from prunekit.data import TensorLoader
from prunekit.errors import PlanError
from prunekit.recover import ChannelFade, RecoveryConfig, faded_channels, finetune, transplant


def _resnet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = zoo.build("fmnist_resnet")
    x = torch.randn(64, 1, 28, 28)
    model.train()
    with torch.no_grad():
        model(x)  # BatchNorm statistics that are not the identity
    return model.eval(), x


def test_faded_channels_are_the_ones_the_plan_cuts() -> None:
    dense, x = _resnet()
    one_shot = pk.prune(dense, pk.Structured(sparsity=0.5), x[:1])
    channels = faded_channels(dense, one_shot.plan)
    assert channels, "a 50% cut removes channels from BatchNorm layers"
    for name, removed in channels.items():
        norm = dense.get_submodule(name)
        kept = one_shot.plan.kept[f"{name}.weight"][0]
        assert len(removed) + len(kept) == norm.num_features
        assert not set(removed.tolist()) & set(kept)


def test_fade_schedule_is_cubic_to_zero() -> None:
    fade = ChannelFade({}, end_fraction=0.5)
    assert fade.factor_at(0, 100) == 1.0
    assert fade.factor_at(25, 100) == pytest.approx(0.125)
    assert fade.factor_at(50, 100) == 0.0
    assert fade.factor_at(99, 100) == 0.0


def test_faded_to_zero_equals_the_cut_model_after_training() -> None:
    dense, x = _resnet()
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    one_shot = pk.prune(dense, pk.Structured(sparsity=0.5), x[:1])
    model = copy.deepcopy(dense)
    fade = ChannelFade(faded_channels(model, one_shot.plan), end_fraction=0.5)
    finetune(model, TensorLoader(x, y, 16, shuffle=True), RecoveryConfig(epochs=2, lr=0.05),
             progress=False, pruner=fade)
    assert fade.factor == 0.0
    with torch.no_grad():
        faded = model.eval()(x)
    fade.remove(model)
    with torch.no_grad():
        assert not torch.allclose(model(x), faded, atol=1e-3)  # hooks off: channels back
    pruned = transplant(model, one_shot)
    assert pruned is one_shot.model
    with torch.no_grad():
        assert torch.allclose(pruned.eval()(x), faded, atol=1e-4)
    assert sum(p.numel() for p in pruned.parameters()) < 0.3 * sum(
        p.numel() for p in dense.parameters())


def test_channels_without_a_norm_layer_cannot_be_faded() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    one_shot = pk.prune(mlp, pk.Structured(sparsity=0.5), torch.randn(2, 8))
    with pytest.raises(PlanError, match="no BatchNorm"):
        faded_channels(mlp, one_shot.plan)
