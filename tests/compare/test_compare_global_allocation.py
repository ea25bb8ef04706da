"""``wanda-global-P`` / ``sparsegpt-global-P``: calibrated image variants whose per-layer
sparsity is each layer's share of the global magnitude ranking of ``magnitude-P``."""

from __future__ import annotations

import copy

import pytest
import torch
from compare_factories import bundle
from torch import nn

from prunekit import Unstructured
from prunekit.compare import parse_variant, parse_variants
from prunekit.compare.gradual import gradual_stage
from prunekit.compare.pipeline import calibration_batches, emptied_rows, prune_variant
from prunekit.errors import SpecError


def tiny() -> nn.Module:
    """A 1-channel 3x3 stem (rows of 9 weights), a wider conv and a head, 1x28x28 inputs."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()


def _sparsity(weight: torch.Tensor) -> float:
    return float((weight == 0).float().mean())


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_global_names_parse_to_globally_allocated_specs(method: str) -> None:
    variant = parse_variant(f"{method.upper()}-Global-95")
    assert variant.name == f"{method}-global-95" and variant.family == "unstructured"
    assert variant.specs == (Unstructured(sparsity=0.95, importance=method,
                                          allocation="global"),)
    assert variant.calibrated and variant.sparsity == 0.95
    assert gradual_stage(variant) is None
    assert parse_variant(f"{method}-95").specs[0].allocation == "uniform"


def test_bad_global_names_are_refused() -> None:
    for text in ("sparsegpt-global-100", "sparsegpt-global", "l1-global-90", "wanda-owl-90"):
        with pytest.raises(SpecError):
            parse_variants(text)


def test_a_global_spec_leaves_no_layer_dense() -> None:
    model = tiny()
    assert emptied_rows(model, parse_variant("wanda-95").specs[0]) == ["0"]
    assert emptied_rows(model, parse_variant("wanda-global-95").specs[0]) == []


def test_sparsegpt_global_takes_each_layers_sparsity_from_unstructured_p() -> None:
    model = tiny()
    x = torch.randn(1, 1, 28, 28)
    calibration = calibration_batches(bundle().train, count=2)
    magnitude = prune_variant(copy.deepcopy(model), parse_variant("magnitude-90"), x)
    result = prune_variant(copy.deepcopy(model), parse_variant("sparsegpt-global-90"), x,
                           calibration=calibration)
    assert result.plan.skipped == {}  # the stem is pruned too, by its global share
    for index in (0, 2, 6):
        assert _sparsity(result.model[index].weight) == pytest.approx(
            _sparsity(magnitude.model[index].weight), abs=1e-6)
    stem, conv = _sparsity(result.model[0].weight), _sparsity(result.model[2].weight)
    assert stem != conv  # not uniform
    weights = [result.model[i].weight for i in (0, 2, 6)]
    removed = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert removed == pytest.approx(0.9, abs=1e-3)
