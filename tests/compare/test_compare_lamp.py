"""The global rankings of the image variants: ``unstructured-P`` (LAMP scores),
``magnitude-P`` (|w|); a finished row whose recipe changed is run again on resume."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from compare_factories import bundle
from torch import nn

from prunekit import Unstructured, zoo
from prunekit.compare import CompareSettings, parse_variant, parse_variants, run_comparison
from prunekit.compare.gradual import gradual_stage
from prunekit.compare.pipeline import prune_variant
from prunekit.errors import SpecError


def tiny() -> nn.Module:
    """Convolutions whose weights differ in scale by orders of magnitude, and a head."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16, eps=1e-9),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    with torch.no_grad():  # BatchNorm follows: the scale does not matter to the outputs
        model[3].weight.mul_(1e-3)
        model[4].running_var.mul_(1e-6)  # the statistics training gives such a layer
    return model.eval()


@pytest.mark.parametrize(("name", "importance"), [
    ("Unstructured-95", "lamp"),
    ("magnitude-95", "l1"),
])
def test_names_parse_to_global_rankings(name: str, importance: str) -> None:
    variant = parse_variant(name)
    assert variant.name == name.lower() and variant.family == "unstructured"
    assert variant.specs == (Unstructured(sparsity=0.95, scope="global", importance=importance),)
    assert not variant.calibrated and not variant.structured and variant.sparsity == 0.95
    assert gradual_stage(variant) is not None


@pytest.mark.parametrize("text", ["magnitude-100", "bnfold-90", "magnitude", "lamp-global-90"])
def test_bad_ranking_names_are_refused(text: str) -> None:
    with pytest.raises(SpecError):
        parse_variants(text)


def _sparsities(model: nn.Module) -> list[float]:
    return [float((model[i].weight == 0).float().mean()) for i in (0, 3, 8)]


def test_unstructured_keeps_a_small_scale_layer_that_magnitude_empties() -> None:
    model, x = tiny(), torch.randn(1, 1, 28, 28)
    magnitude = prune_variant(copy.deepcopy(model), parse_variant("magnitude-90"), x)
    lamp = prune_variant(copy.deepcopy(model), parse_variant("unstructured-90"), x)
    assert _sparsities(magnitude.model)[1] == 1.0
    assert max(_sparsities(lamp.model)) < 1.0
    weights = [lamp.model[i].weight for i in (0, 3, 8)]
    removed = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert removed == pytest.approx(0.9, abs=1e-3)


def test_a_row_finished_with_another_recipe_is_run_again(tmp_path: Path) -> None:
    settings = CompareSettings(tuple(parse_variants("unstructured-80,nm-2:4")), tmp_path,
                               model_ref="mlp", quick=True, progress=False)
    run_comparison(settings, lambda: zoo.build("mlp"), bundle())
    path = tmp_path / "results.json"
    saved = json.loads(path.read_text())
    nm = copy.deepcopy(saved["variants"]["nm-2:4"])
    saved["variants"]["unstructured-80"]["specs"][0]["importance"] = "l1"  # an older recipe
    saved["variants"]["unstructured-80"]["accuracy"] = -1.0
    path.write_text(json.dumps(saved))
    again = run_comparison(settings, lambda: zoo.build("mlp"), bundle())
    assert again["variants"]["unstructured-80"]["accuracy"] >= 0  # pruned and measured again
    assert again["variants"]["unstructured-80"]["specs"][0]["importance"] == "lamp"
    assert again["variants"]["nm-2:4"] == nm  # the same recipe: reused
