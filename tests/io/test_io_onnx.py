"""ONNX export: onnxruntime reproduces the PyTorch outputs for pruned models."""

from __future__ import annotations

import pytest
import torch
from io_helpers import assert_same_outputs, masked_zoo

import prunekit as pk
from prunekit.apply.surgery.rebuild import rebuild_pruned_architecture
from prunekit.errors import ArtifactExistsError
from prunekit.io import check_onnx, export_onnx
from prunekit.plan import Plan
from prunekit.sparse import to_sparse

pytest.importorskip("onnxruntime")


def _export_and_check(model, x, path):
    export_onnx(model, x, path)
    check = check_onnx(model, x, path)
    assert check.ok, check
    return check


@pytest.mark.parametrize("name", ["mlp", "lenet", "vgg", "resnet", "transformer"])
def test_masked_zoo_models_export(name, tmp_path):
    result, x = masked_zoo(name)
    _export_and_check(result.model, x, tmp_path / f"{name}.onnx")
    assert pk.apply.masks.masked_modules(result.model)  # the export worked on a copy


def test_physically_pruned_and_sparse_models_export(tmp_path):
    plan = Plan(spec=pk.Structured(sparsity=0.5).to_dict(),
                shapes={"1.weight": [128, 784], "1.bias": [128], "3.weight": [128, 128]},
                attributes={"1": {"out_features": 128}, "3": {"in_features": 128}})
    model = rebuild_pruned_architecture(pk.zoo.build("mlp"), plan)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    x = pk.zoo.example_inputs("mlp", 4)
    _export_and_check(model, x, tmp_path / "physical.onnx")
    sparse = to_sparse(pk.prune(model, pk.Unstructured(sparsity=0.9)), kernel="csr").model
    _export_and_check(sparse, x, tmp_path / "sparse.onnx")


def test_structured_zoo_model_exports(tmp_path):
    pytest.importorskip("prunekit.structured")
    x = pk.zoo.example_inputs("resnet", 2)
    result = pk.prune(pk.zoo.build("resnet"), pk.Structured(sparsity=0.5), x)
    _export_and_check(result.model, x, tmp_path / "resnet.onnx")


@pytest.mark.torchvision
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_models_export_and_round_trip(name, tmp_path):
    pytest.importorskip("torchvision")
    from prunekit.cli.model_ref import build_model

    x = torch.randn(1, 3, 64, 64)
    model = build_model(f"torchvision:{name}").eval()
    result = pk.prune(model, pk.Structured(sparsity=0.3), x)
    _export_and_check(result.model, x, tmp_path / f"{name}.onnx")
    folder = pk.save(result, tmp_path / name, model_ref=f"torchvision:{name}")
    assert_same_outputs(pk.load(folder), result.model, x)


def test_export_refuses_to_overwrite(tmp_path):
    result, x = masked_zoo("mlp")
    path = tmp_path / "m.onnx"
    path.write_bytes(b"keep")
    with pytest.raises(ArtifactExistsError):
        export_onnx(result.model, x, path)
    assert path.read_bytes() == b"keep"
    export_onnx(result.model, x, path, overwrite=True)
    assert check_onnx(result.model, x, path).ok


def test_export_and_check_take_a_prune_result(tmp_path):
    result, x = masked_zoo("mlp")
    path = export_onnx(result, x, tmp_path / "result.onnx")  # the result, not result.model
    check = check_onnx(result, x, path)
    assert check.ok, check
    same = check_onnx(result.model, x, path)
    assert same.max_abs_diff == check.max_abs_diff  # the result stands for its model
    assert pk.apply.masks.masked_modules(result.model)  # exported from a copy


def test_export_refuses_what_is_not_a_model_before_writing(tmp_path):
    _, x = masked_zoo("mlp")
    with pytest.raises(pk.SpecError, match="PruneResult, got dict"):
        export_onnx({"weights": 1}, x, tmp_path / "bad.onnx")
    with pytest.raises(pk.SpecError, match="PruneResult, got str"):
        check_onnx("model.onnx", x, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []
