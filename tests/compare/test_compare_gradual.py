"""Gradual pruning in compare: where training starts, the target reached, what is saved."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit import zoo
from prunekit.apply.masks import effective_weight, existing_mask, masked_modules
from prunekit.compare import CompareSettings, parse_variant, parse_variants, run_comparison
from prunekit.compare.gradual import gradual_stage, gradual_start, with_trained_model
from prunekit.compare.pipeline import prune_variant
from prunekit.data import DataBundle, TensorLoader
from prunekit.recover import RecoveryConfig, finetune


def _data() -> DataBundle:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 28, 28, generator=gen)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    return DataBundle(TensorLoader(x[:192], y[:192], 32, shuffle=True),
                      TensorLoader(x[192:], y[192:], 64), name="synthetic")


def _weight_sparsity(model: nn.Module) -> float:
    weights = [effective_weight(m) for _, m, _ in masked_modules(model)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def test_only_variants_ending_unstructured_are_gradual() -> None:
    assert gradual_stage(parse_variant("unstructured-90")).sparsity == pytest.approx(0.9)
    assert gradual_stage(parse_variant("combined-50+80")).sparsity == pytest.approx(0.8)
    assert gradual_stage(parse_variant("structured-50")) is None
    assert gradual_stage(parse_variant("nm-2:4")) is None


def test_combined_starts_from_its_structured_stage_unmasked() -> None:
    torch.manual_seed(0)
    dense = zoo.build("fmnist_resnet").eval()
    example = torch.randn(1, 1, 28, 28)
    variant = parse_variant("combined-50+80")
    model, pruner = gradual_start(dense, variant, example)
    structured = prune_variant(dense, dataclasses.replace(variant, specs=variant.specs[:1]),
                               example).model
    assert [p.shape for p in model.parameters()] == [p.shape for p in structured.parameters()]
    assert not masked_modules(model)  # nothing removed yet: the pruner does it on schedule
    assert pruner.schedule.final_sparsity == pytest.approx(0.8)
    assert sum(p.numel() for p in dense.parameters()) > 3 * sum(
        p.numel() for p in model.parameters())


def test_trained_result_records_the_final_masks_and_saves_them(tmp_path: Path) -> None:
    dense = zoo.build("mlp")
    example = torch.randn(2, 1, 28, 28)
    variant = parse_variant("unstructured-80")
    one_shot = prune_variant(dense, variant, example)
    model, pruner = gradual_start(dense, variant, example)
    finetune(model, _data().train, RecoveryConfig(epochs=2, lr=0.01), progress=False,
             pruner=pruner)
    assert _weight_sparsity(model) == pytest.approx(0.8, abs=1e-3)
    result = with_trained_model(one_shot, model)
    assert result.model is model
    for name, module, param in masked_modules(model):
        mask = existing_mask(module, param)
        assert mask is not None
        assert torch.equal(result.plan.masks[f"{name}.{param}"], mask)
    assert result.summary().sparsity == pytest.approx(one_shot.summary().sparsity, abs=1e-3)
    loaded = pk.load(pk.save(result, tmp_path / "u80", model_ref="zoo:mlp"))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), model.eval()(x), atol=1e-5)


@pytest.mark.parametrize("gradual", [True, False])
def test_runner_records_the_schedule_and_reaches_the_target(tmp_path: Path,
                                                           gradual: bool) -> None:
    settings = CompareSettings(tuple(parse_variants("unstructured-80")), tmp_path,
                               model_ref="mlp", quick=True, progress=False, gradual=gradual)
    data = run_comparison(settings, lambda: zoo.build("mlp"), _data())
    row = data["variants"]["unstructured-80"]
    assert row["status"] == "done"
    schedule = row["finetune"]["schedule"]
    if gradual:
        assert schedule["kind"] == "gradual"
        assert schedule["final_sparsity"] == pytest.approx(0.8)
    else:
        assert schedule == {"kind": "one-shot"}
    assert row["finetune"]["augment"] is False
    dense_nonzero = data["dense"]["nonzero_params"]
    assert row["nonzero_params"] < 0.3 * dense_nonzero


def test_structured_variants_fade_where_every_cut_channel_has_a_batchnorm(
        tmp_path: Path) -> None:
    settings = CompareSettings(tuple(parse_variants("structured-50")), tmp_path / "resnet",
                               model_ref="fmnist_resnet", quick=True, progress=False)
    data = run_comparison(settings, lambda: zoo.build("fmnist_resnet"), _data())
    row = data["variants"]["structured-50"]
    assert row["status"] == "done" and row["finetune"]["schedule"]["kind"] == "fade"
    assert row["params"] < 0.3 * data["dense"]["params"]
    loaded = pk.load(row["disk"]["path"])
    assert sum(p.numel() for p in loaded.parameters()) == row["params"]

    mlp = CompareSettings(tuple(parse_variants("structured-50")), tmp_path / "mlp",
                          model_ref="mlp", quick=True, progress=False)
    row = run_comparison(mlp, lambda: zoo.build("mlp"), _data())["variants"]["structured-50"]
    assert row["status"] == "done" and row["finetune"]["schedule"] == {"kind": "one-shot"}
