"""allocation="global": Wanda / SparseGPT with each layer's sparsity taken from a global
magnitude ranking (what global L1 pruning removes per layer)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.oneshot.allocation import magnitude_sparsities
from prunekit.select.unstructured import removal_count


def _cnn() -> nn.Module:
    """A small conv net whose layers have very different weight scales."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )
    with torch.no_grad():
        model[0].weight.mul_(4.0)  # large: a global ranking keeps much of it
        model[2].weight.mul_(0.25)  # small: a global ranking removes most of it
    return model


def _calibration() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(4, 1, 8, 8, generator=gen) for _ in range(2)]


def _layer_sparsity(result: pk.PruneResult) -> dict[str, float]:
    return {key.rpartition(".")[0]: 1.0 - float(mask.float().mean())
            for key, mask in result.plan.masks.items()}


def test_magnitude_sparsities_count_the_global_ranking_per_layer() -> None:
    weights = {"a": torch.tensor([[0.1, -0.2], [0.25, 4.0]]), "b": torch.tensor([3.0, -5.0])}
    assert magnitude_sparsities(weights, 0.5) == {"a": 0.75, "b": 0.0}
    assert magnitude_sparsities(weights, 0.0) == {"a": 0.0, "b": 0.0}


@pytest.mark.parametrize("target", [0.3, 0.9, 0.95])
def test_magnitude_sparsities_remove_the_target_overall(target: float) -> None:
    gen = torch.Generator().manual_seed(0)
    weights = {f"w{i}": torch.randn(7 + 5 * i, 9, generator=gen) * (i + 1) for i in range(4)}
    sparsity = magnitude_sparsities(weights, target)
    total = sum(w.numel() for w in weights.values())
    removed = sum(removal_count(w.numel(), sparsity[k]) for k, w in weights.items())
    assert removed == removal_count(total, target)
    assert all(0.0 <= s <= 1.0 for s in sparsity.values())
    # the layers with larger weights keep more of them
    ordered = [sparsity[f"w{i}"] for i in range(4)]
    assert ordered == sorted(ordered, reverse=True) and ordered[0] > ordered[-1]


@pytest.mark.parametrize("target", [-0.1, 1.0, 1.5])
def test_magnitude_sparsities_refuse_a_target_outside_0_1(target: float) -> None:
    with pytest.raises(pk.SpecError, match=r"\[0, 1\)"):
        magnitude_sparsities({"a": torch.ones(4)}, target)


def test_magnitude_sparsities_refuse_non_finite_or_missing_weights() -> None:
    with pytest.raises(pk.SpecError, match="non-finite"):
        magnitude_sparsities({"a": torch.tensor([1.0, float("nan")])}, 0.5)
    with pytest.raises(pk.SpecError, match="no weights"):
        magnitude_sparsities({"a": torch.ones(0)}, 0.5)
    with pytest.raises(pk.SpecError, match="at least one layer"):
        magnitude_sparsities({}, 0.5)


def test_sparsegpt_global_allocation_takes_each_layers_share_from_global_l1() -> None:
    model = _cnn()
    l1 = pk.prune(copy.deepcopy(model),
                  pk.Unstructured(sparsity=0.8, scope="global", importance="l1"))
    spec = pk.Unstructured(sparsity=0.8, importance="sparsegpt", allocation="global")
    result = pk.prune(copy.deepcopy(model), spec, calibration=_calibration())
    expected, got = _layer_sparsity(l1), _layer_sparsity(result)
    assert got == pytest.approx(expected, abs=1e-6)
    assert got["0"] < 0.8 < got["2"]  # not uniform
    masks = result.plan.masks.values()
    removed = sum(int((~m).sum()) for m in masks)
    assert removed == removal_count(sum(m.numel() for m in masks), 0.8)
    assert result.plan.spec["allocation"] == "global"
    # SparseGPT still chooses its own weights inside each layer (and updates the rest)
    assert not torch.equal(result.model[2].weight, l1.model[2].weight)


def test_wanda_global_allocation_is_per_layer_and_close_to_the_target() -> None:
    model = _cnn()
    uniform = pk.prune(copy.deepcopy(model), pk.Unstructured(sparsity=0.8, importance="wanda"),
                       calibration=_calibration())
    spec = pk.Unstructured(sparsity=0.8, importance="wanda", allocation="global")
    result = pk.prune(copy.deepcopy(model), spec, calibration=_calibration())
    got = _layer_sparsity(result)
    assert got["0"] < _layer_sparsity(uniform)["0"]
    masks = list(result.plan.masks.values())
    removed = sum(int((~m).sum()) for m in masks) / sum(m.numel() for m in masks)
    assert removed == pytest.approx(0.8, abs=0.02)  # Wanda rounds each output row


def test_global_allocation_refuses_overrides_and_an_uncalibrated_score() -> None:
    with pytest.raises(pk.SpecError, match="calibrated"):
        pk.Unstructured(sparsity=0.5, allocation="global")
    with pytest.raises(pk.SpecError, match="overrides"):
        pk.prune(_cnn(), pk.Unstructured(sparsity=0.5, importance="wanda", allocation="global"),
                 overrides={"2": 0.75}, calibration=_calibration())


def test_global_allocation_round_trips_through_the_spec_dict() -> None:
    spec = pk.Unstructured(sparsity=0.5, importance="sparsegpt", allocation="global")
    assert spec.to_dict()["allocation"] == "global"
    assert pk.spec_from_dict(spec.to_dict()) == spec
