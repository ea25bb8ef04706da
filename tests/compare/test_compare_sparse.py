"""compare times models with zeros inside their layers after pk.to_sparse: which model is
timed, what the row records, and dense timing with a stated reason where the sparse kernels
cannot run. Layer timings inside to_sparse are faked (every eligible layer wins), so the tests
assert which layers went sparse and which model was timed, never a speed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from compare_factories import bundle
from torch import nn

import prunekit as pk
from prunekit import zoo
from prunekit.compare import CompareSettings, measuring, parse_variants, run_comparison
from prunekit.compare import pipeline as compare_pipeline
from prunekit.compare.pipeline import OUTPUT_ATOL, OUTPUT_RTOL, deployable, sparse_deployable
from prunekit.errors import PruningBrokeModelError
from prunekit.report import render_markdown
from prunekit.sparse import CSRConv2d, CSRLinear, conv_choice, kernels
from prunekit.sparse import dispatch as dispatch_module
from prunekit.sparse import whole_model as whole_model_module

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba not installed")
SPARSE_TYPES = (CSRConv2d, CSRLinear)


def _run(out: Path, variants: str, model: str = "lenet") -> dict[str, Any]:
    settings = CompareSettings(tuple(parse_variants(variants)), out, model_ref=model,
                               quick=True, progress=False)
    return run_comparison(settings, lambda: zoo.build(model), bundle())


def _sparse_always_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """to_sparse's layer and whole-model timings report sparse twice as fast as dense (each
    call runs once, so both versions still compute)."""
    def fake(first, second, device, budget_s=0.2, max_rounds=50):
        first(), second()
        return [2.0] * 8, [1.0] * 8

    monkeypatch.setattr(conv_choice, "time_pair", fake)
    monkeypatch.setattr(dispatch_module, "time_pair", fake)
    monkeypatch.setattr(whole_model_module, "time_pair", fake)  # the whole model wins too


def _spy_timings(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each latency timing compare makes: batch, sparse layers of the timed model, and the
    memory format it was timed in."""
    calls: list[dict[str, Any]] = []
    real = measuring.time_models

    def spy(models, inputs, **kwargs):
        timed = models.get("model")
        calls.append({
            "batch": int(inputs.shape[0]),
            "sparse": sorted(n for n, m in (timed.named_modules() if timed else [])
                             if isinstance(m, SPARSE_TYPES)),
            "channels_last": kwargs["channels_last"]["model"],
        })
        return real(models, inputs, **kwargs)

    monkeypatch.setattr(measuring, "time_models", spy)
    return calls


@needs_numba
def test_unstructured_latency_comes_from_the_converted_model_structured_stays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _sparse_always_wins(monkeypatch)
    calls = _spy_timings(monkeypatch)
    data = _run(tmp_path, "unstructured-95,structured-50")
    u, s = data["variants"]["unstructured-95"], data["variants"]["structured-50"]
    assert u["status"] == s["status"] == "done"
    # every layer at least half zeros is eligible and (timings faked) goes sparse
    eligible = sorted(x["name"] for x in u["layers"] if x["sparsity"] >= 0.5)
    assert eligible, u["layers"]
    convs = {n for n, m in zoo.build("lenet").named_modules() if isinstance(m, nn.Conv2d)}
    assert convs & set(eligible), u["layers"]  # a sparse convolution is timed
    timed_sparse = [c for c in calls if c["sparse"]]
    assert sorted(c["batch"] for c in timed_sparse) == [1, 64]  # one timing per batch size
    for call in timed_sparse:
        record = u["sparse"][f"b{call['batch']}"]
        assert record["converted"] and record["timed"] == "to_sparse"
        assert call["sparse"] == eligible  # the timed model is the converted one
        assert record["convs"] == {"sparse": len(convs & set(eligible)), "total": len(convs)}
        assert record["kernels"] == {"csr": len(eligible)}
        assert call["channels_last"] is False  # CSRConv2d runs NCHW
        latency = u["latency_cpu"][f"b{call['batch']}"]
        assert latency["timed"] == "to_sparse"
        assert latency["channels_last"] is call["channels_last"]
    # dense, the control and the structured variant are timed as they are
    assert "sparse" not in s and "sparse" not in data["dense"]
    for row in (s, data["dense"], data["control"]):
        assert {v["timed"] for v in row["latency_cpu"].values()} == {"deployable"}
    assert len(calls) == 8  # dense, control, two variants; two batch sizes each


def test_without_numba_the_run_times_dense_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "numba", None)  # numba not installed
    calls = _spy_timings(monkeypatch)
    data = _run(tmp_path, "unstructured-90", model="mlp")
    u = data["variants"]["unstructured-90"]
    assert u["status"] == "done"
    for batch in ("b1", "b64"):
        record = u["sparse"][batch]
        assert not record["converted"] and record["timed"] == "deployable"
        assert "numba is not installed" in record["reason"]
        assert u["latency_cpu"][batch]["timed"] == "deployable"
    assert not any(c["sparse"] for c in calls)
    assert "dense timing: numba is not installed" in render_markdown(data, plots=False)


@pytest.fixture()
def lenet_deployable() -> tuple[nn.Module, torch.Tensor]:
    model = zoo.build("lenet").eval()
    x = torch.randn(8, 1, 28, 28)
    result = pk.prune(model, pk.Unstructured(sparsity=0.9, scope="layer"), x)
    return deployable(result.model).to(memory_format=torch.channels_last), x


@needs_numba
def test_the_converted_model_computes_the_deployable_outputs(
        lenet_deployable: tuple[nn.Module, torch.Tensor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _sparse_always_wins(monkeypatch)
    deploy, x = lenet_deployable
    before = {k: v.clone() for k, v in deploy.state_dict().items()}
    converted, record = sparse_deployable(deploy, x)
    assert converted is not None and record["converted"]
    assert any(isinstance(m, CSRConv2d) for m in converted.modules())  # a real conversion
    with torch.inference_mode():
        torch.testing.assert_close(converted(x), deploy(x), rtol=OUTPUT_RTOL, atol=OUTPUT_ATOL)
    assert all(torch.equal(v, deploy.state_dict()[k]) for k, v in before.items())  # untouched


@needs_numba
def test_a_conversion_whose_outputs_differ_is_timed_dense(
        lenet_deployable: tuple[nn.Module, torch.Tensor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _sparse_always_wins(monkeypatch)
    real = compare_pipeline.to_sparse

    def off_by_one(model, example_inputs, **kwargs):
        conversion = real(model, example_inputs, **kwargs)
        with torch.no_grad():
            conversion.model.classifier[3].bias.add_(1.0)
        return conversion

    monkeypatch.setattr(compare_pipeline, "to_sparse", off_by_one)
    deploy, x = lenet_deployable
    converted, record = sparse_deployable(deploy, x)
    assert converted is None and not record["converted"]
    assert record["timed"] == "deployable" and "outputs differ" in record["reason"]
    assert record["max_abs_diff"] == pytest.approx(1.0, abs=1e-3)


def test_a_failed_conversion_is_timed_dense_with_its_error(
        lenet_deployable: tuple[nn.Module, torch.Tensor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "available", lambda: True)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise PruningBrokeModelError("to_sparse broke the model: boom")

    monkeypatch.setattr(compare_pipeline, "to_sparse", broken)
    converted, record = sparse_deployable(*lenet_deployable)
    assert converted is None and not record["converted"]
    assert record["reason"].startswith("to_sparse failed: to_sparse broke the model: boom")
