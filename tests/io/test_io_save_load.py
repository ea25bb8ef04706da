"""save / load round trips for every end state: outputs identical, end state restored."""

from __future__ import annotations

import json

import pytest
import torch
from io_helpers import assert_same_outputs, masked_zoo
from safetensors.torch import load_file
from torch import nn

import prunekit as pk
from prunekit.apply.masks import apply_mask, existing_mask, masked_modules
from prunekit.apply.surgery.rebuild import rebuild_pruned_architecture
from prunekit.errors import FormatError, UnsupportedModelError
from prunekit.io import read_manifest
from prunekit.plan import Plan
from prunekit.result import PruneResult
from prunekit.sparse import CSRLinear, to_sparse


@pytest.mark.parametrize("name", ["mlp", "lenet", "vgg", "resnet", "fmnist_resnet", "transformer"])
def test_masked_zoo_models_round_trip_with_their_masks(name, tmp_path):
    result, x = masked_zoo(name)
    folder = pk.save(result, tmp_path / name)
    loaded = pk.load(folder)
    assert_same_outputs(loaded, result.model, x)
    saved_masks = {f"{n}.{p}": existing_mask(m, p) for n, m, p in masked_modules(result.model)}
    loaded_masks = {f"{n}.{p}": existing_mask(m, p) for n, m, p in masked_modules(loaded)}
    assert saved_masks.keys() == loaded_masks.keys()
    assert all(torch.equal(saved_masks[k], loaded_masks[k]) for k in saved_masks)
    assert sorted(pk.finalize(loaded).state_dict()) == sorted(pk.zoo.build(name).state_dict())


def test_manifest_records_what_the_issue_asks_for(tmp_path):
    result, _ = masked_zoo("mlp")
    folder = pk.save(result, tmp_path / "mlp")
    data = json.loads((folder / "manifest.json").read_text())
    assert data["format_version"] == 1 and data["end_state"] == ["masked"]
    assert data["model"]["ref"] == "zoo:mlp"
    assert data["spec"] == result.spec.to_dict()
    assert data["plan"]["masks"] == {}  # masks live in the storage structure
    assert {"prunekit", "torch", "safetensors"} <= set(data["versions"])
    weight = data["tensors"]["1.weight"]
    assert weight["format"] == "gaps" and weight["masked"] and weight["shape"] == [256, 784]
    assert data["tensors"]["1.bias"]["format"] == "dense"
    assert set(load_file(folder / "model.safetensors")) >= {"1.bias", "1.weight::gaps"}


def test_nm_masks_are_stored_in_nm_form_and_restored(tmp_path):
    result, x = masked_zoo("transformer", pk.NM(n_keep=2, m=4))
    folder = pk.save(result, tmp_path / "nm")
    formats = {t.format for t in read_manifest(folder).tensors.values()}
    assert "nm" in formats
    assert_same_outputs(pk.load(folder), result.model, x)


def test_plain_finalized_model_needs_a_reference_or_a_factory(tmp_path):
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    pk.finalize(pk.prune(model, pk.Unstructured(sparsity=0.5), inplace=True).model)
    folder = pk.save(model, tmp_path / "plain")
    assert read_manifest(folder).end_state == ["dense"]
    with pytest.raises(FormatError, match="no model reference"):
        pk.load(folder)
    def factory() -> nn.Module:
        return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))

    x = torch.randn(3, 8)
    assert_same_outputs(pk.load(folder, build=factory), model, x)


def test_import_references_run_only_when_allowed(tmp_path):
    result, x = masked_zoo("lenet")
    folder = pk.save(result, tmp_path / "lenet", model_ref="prunekit.zoo.convnets:lenet")
    assert read_manifest(folder).model["ref"] == "import:prunekit.zoo.convnets:lenet"
    with pytest.raises(UnsupportedModelError, match="run code"):
        pk.load(folder)
    assert_same_outputs(pk.load(folder, allow_import=True), result.model, x)


def test_sparse_stored_model_round_trips_with_its_kernels(tmp_path):
    result, x = masked_zoo("transformer", pk.Unstructured(sparsity=0.95))
    conversion = to_sparse(result, x, kernel={"blocks.0.fc1": "csr", "head": "csr"})
    folder = pk.save(conversion, tmp_path / "sparse", model_ref="zoo:transformer")
    manifest = read_manifest(folder)
    assert manifest.end_state == ["sparse"]
    assert manifest.sparse_modules == {"blocks.0.fc1": "csr", "head": "csr"}
    loaded = pk.load(folder)
    assert isinstance(loaded.get_submodule("head"), CSRLinear)
    assert_same_outputs(loaded, conversion.model, x)


def _shrunk_mlp_plan() -> Plan:
    """A structured plan for the zoo MLP: hidden layer 256 -> 96 (what surgery records)."""
    kept = list(range(0, 256, 8)) + list(range(1, 256, 4))[:64]
    return Plan(
        spec=pk.Structured(sparsity=0.625).to_dict(),
        kept={"1.weight": {0: sorted(kept)}, "1.bias": {0: sorted(kept)}, "3.weight": {1: sorted(kept)}},
        shapes={"1.weight": [96, 784], "1.bias": [96], "3.weight": [128, 96]},
        attributes={"1": {"out_features": 96}, "3": {"in_features": 96}},
    )


def _physical_result() -> PruneResult:
    plan = _shrunk_mlp_plan()
    model = rebuild_pruned_architecture(pk.zoo.build("mlp"), plan)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return PruneResult(model, plan, pk.Structured(sparsity=0.625), {}, 0)


def test_physically_pruned_model_is_rebuilt_from_the_factory(tmp_path):
    result = _physical_result()
    folder = pk.save(result, tmp_path / "physical")
    manifest = read_manifest(folder)
    assert manifest.end_state == ["physical"]
    assert manifest.plan is not None and manifest.plan["attributes"]["1"] == {"out_features": 96}
    loaded = pk.load(folder)
    assert loaded[1].weight.shape == (96, 784) and loaded[1].out_features == 96
    assert_same_outputs(loaded, result.model, pk.zoo.example_inputs("mlp", 4))


def test_physically_pruned_then_masked_model_round_trips(tmp_path):
    result = _physical_result()
    apply_mask(result.model[3], torch.rand(128, 96) > 0.7)
    folder = pk.save(result, tmp_path / "combined")
    assert read_manifest(folder).end_state == ["physical", "masked"]
    loaded = pk.load(folder)
    assert existing_mask(loaded[3]) is not None
    assert_same_outputs(loaded, result.model, pk.zoo.example_inputs("mlp", 4))


def test_structured_prune_result_round_trips(tmp_path):
    pytest.importorskip("prunekit.structured")
    x = pk.zoo.example_inputs("resnet", 4)
    result = pk.prune(pk.zoo.build("resnet"), pk.Structured(sparsity=0.5), x)
    folder = pk.save(result, tmp_path / "resnet50pc")
    assert "physical" in read_manifest(folder).end_state
    assert_same_outputs(pk.load(folder), result.model, x)


def test_half_precision_is_kept(tmp_path):
    result, x = masked_zoo("mlp")
    result.model.half()
    folder = pk.save(result, tmp_path / "half")
    loaded = pk.load(folder)
    assert next(loaded.parameters()).dtype == torch.float16
    assert_same_outputs(loaded, result.model, x.half())


@pytest.mark.torchvision
def test_torchvision_reference(tmp_path):
    pytest.importorskip("torchvision")
    from prunekit.cli.model_ref import build_model

    model = build_model("torchvision:resnet18")
    x = torch.randn(1, 3, 64, 64)
    result = pk.prune(model, pk.Unstructured(sparsity=0.8), x)
    folder = pk.save(result, tmp_path / "r18", model_ref="torchvision:resnet18")
    assert_same_outputs(pk.load(folder), result.model, x)


@pytest.mark.hf
def test_hugging_face_model_is_rebuilt_from_its_stored_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64)
    model = transformers.BertModel(config).eval()
    x = {"input_ids": torch.randint(0, 64, (2, 8))}
    result = pk.prune(model, pk.Unstructured(sparsity=0.7), x)
    folder = pk.save(result, tmp_path / "bert")
    assert read_manifest(folder).model["ref"] == "hf:BertModel"
    assert_same_outputs(pk.load(folder), result.model, x)


def test_artifact_bytes_counts_the_folder(tmp_path):
    result, _ = masked_zoo("mlp")
    folder = pk.save(result, tmp_path / "mlp")
    sizes = sum(f.stat().st_size for f in folder.iterdir())
    assert pk.artifact_bytes(folder) == sizes
    dense = sum(v.numel() * 4 for v in pk.zoo.build("mlp").state_dict().values())
    assert pk.artifact_bytes(folder) < 0.2 * dense


def test_structured_then_unstructured_round_trips(tmp_path):
    """Combined: the structured step's surgery and the unstructured step's masks in one plan
    (the unstructured plan lists only the masked shapes; the stored tensors give the rest)."""
    pytest.importorskip("prunekit.structured")
    import dataclasses

    x = pk.zoo.example_inputs("resnet", 2)
    first = pk.prune(pk.zoo.build("resnet"), pk.Structured(sparsity=0.5), x)
    second = pk.prune(first.model, pk.Unstructured(sparsity=0.8), x)
    plan = dataclasses.replace(second.plan, kept=first.plan.kept,
                               attributes=first.plan.attributes,
                               removed_modules=first.plan.removed_modules)
    result = PruneResult(second.model, plan, second.spec, {}, 0)
    folder = pk.save(result, tmp_path / "combined")
    assert read_manifest(folder).end_state == ["physical", "masked"]
    loaded = pk.load(folder)
    assert masked_modules(loaded)
    assert_same_outputs(loaded, result.model, x)


def test_loaded_masks_and_csr_layers_equal_the_saved_ones(tmp_path):
    """The fast load paths (mask filled from the stored bits, CSR built from the stored
    parts) give exactly the tensors the saved model had."""
    result, x = masked_zoo("transformer", pk.Unstructured(sparsity=0.9))
    folder = pk.save(result, tmp_path / "masked", model_ref="zoo:transformer")
    loaded = pk.load(folder)
    for name, module, param in masked_modules(result.model):
        mine = loaded.get_submodule(name)
        mask = getattr(mine, f"{param}_mask")
        assert mask.dtype == getattr(module, f"{param}_mask").dtype
        assert torch.equal(mask, getattr(module, f"{param}_mask"))
        assert torch.equal(getattr(mine, param), getattr(mine, f"{param}_orig") * mask)
    assert_same_outputs(loaded, result.model, x)
    conversion = to_sparse(result, x, kernel={"blocks.0.fc1": "csr", "head": "csr"})
    folder = pk.save(conversion, tmp_path / "sparse", model_ref="zoo:transformer")
    loaded = pk.load(folder)
    for name in ("blocks.0.fc1", "head"):
        got, want = loaded.get_submodule(name), conversion.model.get_submodule(name)
        assert isinstance(got, CSRLinear)
        for part in ("crow", "col", "values", "bias"):
            assert torch.equal(getattr(got, part), getattr(want, part)), (name, part)
