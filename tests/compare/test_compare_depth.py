"""Depth variants: names, recipes, calibration from the training data, one run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from compare_factories import bundle
from torch import nn

from prunekit.compare import CompareSettings, parse_variant, parse_variants, run_comparison
from prunekit.compare.pipeline import calibration_batches, prune_variant
from prunekit.errors import SpecError
from prunekit.specs import Depth
from prunekit.zoo.convnets import BasicBlock

BLOCKS = ["2.0", "2.1", "2.2"]


def tiny() -> nn.Module:
    """Three removable residual blocks on 1x28x28 inputs, four classes."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8), BasicBlock(8, 8)),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def test_depth_names_parse_to_their_recipes() -> None:
    chosen = parse_variant("Depth-2")
    assert chosen.name == "depth-2" and chosen.family == "depth"
    assert chosen.specs == (Depth(blocks=2, selection="oneshot"),) and chosen.calibrated
    assert parse_variant("depth-greedy2").specs == (Depth(blocks=2, selection="greedy"),)
    last = parse_variant("depth-last2")
    assert last.specs == (Depth(blocks=2, selection="last"),) and not last.calibrated
    assert not last.structured and chosen.sparsity == 0.0
    assert parse_variant("depth-oneshot3").specs == (Depth(blocks=3, selection="oneshot"),)
    assert [v.name for v in parse_variants("depth-2,depth-last2,structured-50")] == [
        "depth-2", "depth-last2", "structured-50"]


@pytest.mark.parametrize("text, words", [
    ("depth-0", "at least one block"), ("depth-x", "unknown variant"),
    ("depth-2,depth-2", "listed twice"), ("depth-first2", "unknown variant"),
])
def test_bad_depth_names(text: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_variants(text)
    assert words in str(info.value)
    assert "depth-last2" in str(info.value) or words == "listed twice"


def test_calibration_is_the_inputs_of_the_first_training_batches() -> None:
    data = bundle()
    batches = calibration_batches(data.train, count=2)
    assert len(batches) == 2 and all(b.shape == (64, 1, 28, 28) for b in batches)
    assert len(calibration_batches(data.train, count=10)) == 3  # all there are


def test_calibration_does_not_depend_on_what_read_the_data_before() -> None:
    """Regression: a variant listed after another one's fine-tuning epoch measured on other
    batches (the loader reshuffles by epoch) and moved the epoch count of the next one."""
    data = bundle()
    first = calibration_batches(data.train, count=2)
    for _ in data.train:  # an epoch of fine-tuning
        pass
    epoch = data.train.epoch
    again = calibration_batches(data.train, count=2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert data.train.epoch == epoch


def test_prune_variant_measures_on_the_calibration_batches() -> None:
    model = tiny().eval()
    x = torch.randn(1, 1, 28, 28)
    calibration = calibration_batches(bundle().train, count=1)
    chosen = prune_variant(model, parse_variant("depth-2"), x, calibration=calibration)
    assert len(chosen.plan.removed_modules) == 2 and set(chosen.influence) == set(BLOCKS)
    last = prune_variant(model, parse_variant("depth-last2"), x, calibration=calibration)
    assert last.plan.removed_modules == BLOCKS[1:]
    assert isinstance(last.model[2][2], nn.Identity)
    assert not isinstance(model[2][2], nn.Identity)


@pytest.mark.slow
def test_a_depth_variant_runs_end_to_end(tmp_path: Path) -> None:
    settings = CompareSettings(tuple(parse_variants("depth-1")), tmp_path,
                               model_ref="test_compare_depth:tiny", quick=True, progress=False)
    data = run_comparison(settings, tiny, bundle())
    row = data["variants"]["depth-1"]
    assert row["status"] == "done", row.get("error")
    assert len(row["depth"]["removed"]) == 1 and set(row["depth"]["influence"]) == set(BLOCKS)
    assert row["params"] < data["dense"]["params"]
    assert (tmp_path / "models" / "depth-1" / "manifest.json").is_file()
    assert torch.isfinite(torch.tensor(row["accuracy"]))
