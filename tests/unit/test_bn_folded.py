"""``importance="bn_folded"``: ``|w|`` times the scale of the BatchNorm that follows the layer,
the pairing found by running the model once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.importance.bn_fold import folded_scales, following_norms, norm_scale


class Fork(nn.Module):
    """One conv feeding two BatchNorms (left unpaired), one conv -> ReLU -> BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn_a, self.bn_b = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4)
        self.late, self.bn_late = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn_late(torch.relu(self.late(self.bn_a(y) + self.bn_b(y))))


def net() -> nn.Sequential:
    """conv -> BN -> ReLU -> conv -> BN -> pool -> Linear -> BN1d -> Linear, BN statistics
    and affine parameters set to varied values."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 8, 3), nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    with torch.no_grad():
        for module in model:
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_var.uniform_(0.01, 4.0)
                module.weight.uniform_(-2.0, 2.0)
    return model.eval()


def test_each_layer_is_paired_with_the_batchnorm_its_output_feeds() -> None:
    model = net()
    names = ["0", "3", "7", "9"]
    pairs = following_norms(model, names, torch.randn(2, 1, 8, 8))
    assert pairs == {"0": model[1], "3": model[4], "7": model[8]}  # the head has none


def test_a_forked_or_indirect_output_is_not_paired() -> None:
    assert following_norms(Fork(), ["conv", "late"], torch.randn(1, 1, 6, 6)) == {}


def test_the_scale_is_gamma_over_the_running_deviation() -> None:
    norm = nn.BatchNorm2d(2, eps=0.0)
    with torch.no_grad():
        norm.running_var.copy_(torch.tensor([4.0, 0.25]))
        norm.weight.copy_(torch.tensor([-3.0, 1.0]))
    assert torch.allclose(norm_scale(norm), torch.tensor([1.5, 2.0]))
    scales = folded_scales(nn.Sequential(nn.Conv2d(1, 2, 3), norm), ["0"], torch.randn(1, 1, 4, 4))
    assert scales["0"].shape == (2, 1, 1, 1)


def folded(model: nn.Sequential) -> dict[str, torch.Tensor]:
    """Brute force: every layer's |w| with the BatchNorm after it folded in."""
    out = {}
    for index, norm in (("0", model[1]), ("3", model[4]), ("7", model[8]), ("9", None)):
        weight = getattr(model, index).weight.detach().abs()
        if norm is not None:
            gamma = norm.weight.detach() / (norm.running_var + norm.eps).sqrt()
            weight = weight * gamma.abs().reshape((-1,) + (1,) * (weight.dim() - 1))
        out[index] = weight
    return out


def test_global_bn_folded_equals_a_brute_force_ranking() -> None:
    model, x = net(), torch.randn(2, 1, 8, 8)
    scores = folded(model)
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    cut = flat.sort().values[round(0.8 * flat.numel()) - 1]
    spec = pk.Unstructured(sparsity=0.8, scope="global", importance="bn_folded")
    masks = pk.prune(model, spec, example_inputs=x).plan.masks
    for index, s in scores.items():
        assert torch.equal(masks[f"{index}.weight"], s > cut)


def test_rescaling_a_conv_and_its_batchnorm_together_changes_nothing() -> None:
    model, x = net(), torch.randn(2, 1, 8, 8)
    specs = [pk.Unstructured(sparsity=0.7, scope="global", importance=importance)
             for importance in ("bn_folded", "l1")]
    before = [pk.prune(model, spec, example_inputs=x).plan.masks for spec in specs]
    with torch.no_grad():  # the same function: conv x 100, its BN's deviation x 100
        model[3].weight.mul_(100.0)
        model[3].bias.mul_(100.0)
        model[4].running_mean.mul_(100.0)
        model[4].running_var.mul_(100.0**2)
    after = [pk.prune(model, spec, example_inputs=x).plan.masks for spec in specs]
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert not torch.equal(before[1]["3.weight"], after[1]["3.weight"])  # magnitude moves


def test_bn_folded_needs_example_inputs() -> None:
    spec = pk.Unstructured(sparsity=0.5, scope="global", importance="bn_folded")
    with pytest.raises(pk.SpecError, match="needs example inputs"):
        pk.prune(net(), spec)


def test_bn_folded_in_nm_groups_is_refused() -> None:
    with pytest.raises(pk.SpecError, match="ranks the weights as 'l1' does"):
        pk.NM(2, 4, importance="bn_folded")
