"""Channel importance criteria and their effect on what is removed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.graph.groups import analyze
from prunekit.importance.channel import channel_scores


def conv_bn_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.ones(4, 3, 3, 3) * torch.tensor([1.0, 2.0, 3.0, 4.0])
                              .view(4, 1, 1, 1))
        model[1].weight.copy_(torch.tensor([4.0, 3.0, 2.0, 1.0]))
    return model.eval()


def channels_of(model: nn.Sequential, x: torch.Tensor, kind: str) -> torch.Tensor:
    analysis = analyze(model, x)
    return channel_scores(kind, analysis, model, batches=[x])


def test_l1_and_l2_follow_filter_norms() -> None:
    model, x = conv_bn_model(), torch.randn(1, 3, 6, 6)
    l1 = channels_of(model, x, "l1")
    assert torch.allclose(l1[:4], torch.tensor([27.0, 54.0, 81.0, 108.0], dtype=torch.float64))
    l2 = channels_of(model, x, "l2")
    assert torch.allclose(l2[:4], torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64) * 27**0.5)


def test_bn_scale_follows_gamma() -> None:
    model, x = conv_bn_model(), torch.randn(1, 3, 6, 6)
    result = pk.prune(model, pk.Structured(sparsity=0.5, importance="bn_scale"), x)
    assert torch.equal(result.model[1].weight.detach(), torch.tensor([4.0, 3.0]))
    result = pk.prune(model, pk.Structured(sparsity=0.5, importance="l1"), x)
    assert torch.equal(result.model[1].weight.detach(), torch.tensor([2.0, 1.0]))


def test_taylor_uses_calibration_and_leaves_grads_alone() -> None:
    model, x = conv_bn_model(), torch.randn(1, 3, 6, 6)
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    batches = [torch.randn(2, 3, 6, 6) for _ in range(2)]
    result = pk.prune(model, pk.Structured(sparsity=0.5, importance="taylor"), x,
                      calibration=batches)
    assert result.model[0].out_channels == 2
    assert all(bool((p.grad == 7.0).all()) for p in model.parameters())
    scores = channels_of(model, x, "taylor")
    assert bool((scores >= 0).all()) and bool((scores > 0).any())


def test_taylor_with_bad_calibration_raises() -> None:
    model, x = conv_bn_model(), torch.randn(1, 3, 6, 6)
    with pytest.raises(pk.CalibrationError):
        pk.prune(model, pk.Structured(sparsity=0.5, importance="taylor"), x,
                 calibration=[torch.randn(1, 5, 6, 6)])


def test_random_is_seeded() -> None:
    model, x = pk.zoo.build("vgg"), pk.zoo.example_inputs("vgg")
    spec = pk.Structured(sparsity=0.5, importance="random")
    a = pk.prune(model, spec, x, seed=1).plan.kept
    b = pk.prune(model, spec, x, seed=1).plan.kept
    c = pk.prune(model, spec, x, seed=2).plan.kept
    assert a == b and a != c
