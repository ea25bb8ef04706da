"""A structured result saves and loads whatever form it is handed over in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import prunekit as pk


@pytest.fixture()
def structured() -> tuple[pk.PruneResult, torch.Tensor]:
    x = pk.zoo.example_inputs("mlp")
    return pk.prune(pk.zoo.build("mlp"), pk.Structured(sparsity=0.5), x), x


def test_to_sparse_of_a_structured_result_keeps_its_plan_and_loads(structured, tmp_path: Path):
    result, x = structured
    conversion = pk.to_sparse(result, x, kernel="csr")
    assert conversion.plan is result.plan
    loaded = pk.load(pk.save(conversion, tmp_path / "sparse"))
    assert type(loaded.get_submodule("1")).__name__ == "CSRLinear"
    assert torch.equal(loaded.eval()(x), conversion.model.eval()(x))


def test_a_bare_structured_model_saves_its_widths_and_loads(structured, tmp_path: Path):
    result, x = structured
    folder = pk.save(result.model, tmp_path / "bare", model_ref="zoo:mlp")
    loaded = pk.load(folder)
    assert loaded.get_submodule("1").out_features == result.model.get_submodule("1").out_features
    assert torch.equal(loaded.eval()(x), result.model.eval()(x))


def test_a_bare_dense_model_still_loads_as_dense(tmp_path: Path):
    model = pk.zoo.build("mlp")
    folder = pk.save(model, tmp_path / "dense")
    loaded = pk.load(folder)
    x = pk.zoo.example_inputs("mlp")
    assert torch.equal(loaded.eval()(x), model.eval()(x))
    assert "physical" not in (folder / "manifest.json").read_text().split('"end_state"')[1][:40]


def test_masks_on_a_structured_result_are_one_plan_that_loads(tmp_path: Path):
    x = pk.zoo.example_inputs("resnet")
    small = pk.prune(pk.zoo.build("resnet"), pk.Structured(sparsity=0.5), x)
    both = pk.prune(small, pk.Unstructured(sparsity=0.8, scope="global"), x)
    assert both.plan.kept == small.plan.kept and both.plan.masks
    assert both.plan.spec["then"]["kind"] == "unstructured"
    assert both.summary().params_before == small.summary().params_before
    again = pk.prune(small.model, pk.Unstructured(sparsity=0.8, scope="global"), x)
    assert not again.plan.kept  # a bare module has no surgery to carry
    loaded = pk.load(pk.save(both, tmp_path / "both"))
    assert torch.equal(loaded.eval()(x), both.model.eval()(x))


def test_masks_after_removed_blocks_count_the_masked_layers(tmp_path: Path):
    x = pk.zoo.example_inputs("fmnist_resnet")
    shallow = pk.prune(pk.zoo.build("fmnist_resnet"), pk.Depth(blocks=1, selection="last"), x)
    both = pk.prune(shallow, pk.Unstructured(sparsity=0.8, scope="global"), x)
    assert both.plan.removed_modules == shallow.plan.removed_modules
    assert str(shallow.summary()).endswith("42.44% of parameters removed")  # no layer targeted
    assert both.summary().sparsity == pytest.approx(0.8, abs=1e-4)
    loaded = pk.load(pk.save(both, tmp_path / "both"), lambda: pk.zoo.build("fmnist_resnet"))
    assert torch.equal(loaded.eval()(x), both.model.eval()(x))
