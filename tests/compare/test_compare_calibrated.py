"""Wanda / SparseGPT image variants: names, recipes, calibration, emptied layers left dense."""

from __future__ import annotations

import pytest
import torch
from compare_factories import bundle
from torch import nn

from prunekit import Unstructured
from prunekit.compare import parse_variant, parse_variants
from prunekit.compare.gradual import gradual_stage
from prunekit.compare.pipeline import calibration_batches, emptied_rows, prune_variant
from prunekit.errors import CalibrationError, SpecError


def tiny() -> nn.Module:
    """A 1-channel 3x3 stem (rows of 9 weights), a wider conv and a head, 1x28x28 inputs."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_calibrated_names_parse_to_per_layer_specs(method: str) -> None:
    variant = parse_variant(f"{method.upper()}-95")
    assert variant.name == f"{method}-95" and variant.family == "unstructured"
    assert variant.specs == (Unstructured(sparsity=0.95, importance=method),)
    assert variant.calibrated and variant.sparsity == 0.95
    assert gradual_stage(variant) is None  # pruned one-shot, even with --gradual
    assert not parse_variant("unstructured-95").calibrated


def test_calibrated_names_list_and_bad_ones() -> None:
    names = [v.name for v in parse_variants("unstructured-95,wanda-95,sparsegpt-90")]
    assert names == ["unstructured-95", "wanda-95", "sparsegpt-90"]
    for text, words in (("wanda-100", "out of range"), ("l2-50", "unknown variant"),
                        ("sparsegpt-2:4", "unknown variant")):
        with pytest.raises(SpecError) as info:
            parse_variants(text)
        assert words in str(info.value) and "wanda-90" in str(info.value)


def test_emptied_rows_names_layers_whose_rows_would_go_whole() -> None:
    model = tiny()
    assert emptied_rows(model, parse_variant("wanda-95").specs[0]) == ["0"]  # 9 * 0.95 -> 9
    assert emptied_rows(model, parse_variant("sparsegpt-90").specs[0]) == []  # 9 * 0.9 -> 8
    assert emptied_rows(model, parse_variant("unstructured-95").specs[0]) == []


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_prune_variant_calibrates_on_the_training_batches(method: str) -> None:
    model = tiny().eval()
    x = torch.randn(1, 1, 28, 28)
    calibration = calibration_batches(bundle().train, count=2)
    result = prune_variant(model, parse_variant(f"{method}-95"), x, calibration=calibration)
    assert result.plan.skipped == {"0": "ignored by '0'"}  # the stem stays dense
    assert float((result.model[0].weight == 0).float().mean()) == 0.0
    conv = result.model[2].weight
    assert float((conv == 0).float().mean()) == pytest.approx(0.95, abs=0.01)
    with pytest.raises(CalibrationError):
        prune_variant(model, parse_variant(f"{method}-95"), x, calibration=None)
