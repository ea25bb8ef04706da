"""Sparse convolutions through the public path: to_sparse, save / load, ONNX export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.sparse import CSRConv2d


class ConvNet(nn.Module):
    """A 2-D conv, a grouped conv, a 1-D conv and a reflect-padded conv, then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(8, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.reflect = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")
        self.line = nn.Conv1d(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reflect(torch.relu(self.b(torch.relu(self.a(x)))))  # (N, 16, 8, 8)
        x = self.line(x.flatten(2)).mean(-1)  # (N, 16)
        return self.fc(x)


@pytest.fixture()
def pruned() -> tuple[pk.PruneResult, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(4, 8, 8, 8)
    return pk.prune(ConvNet(), pk.Unstructured(sparsity=0.95, scope="global"), x), x


def test_forced_csr_swaps_every_supported_conv_and_keeps_outputs(pruned) -> None:
    result, x = pruned
    conversion = pk.to_sparse(result, x, kernel="csr")
    model = conversion.model.eval()
    assert isinstance(model.a, CSRConv2d) and isinstance(model.b, CSRConv2d)
    assert isinstance(model.reflect, nn.Conv2d) and isinstance(model.line, nn.Conv1d)
    reasons = {row.name: row.reason for row in conversion.layers}
    assert "padding_mode" in reasons["reflect"] or "reflect" in reasons["reflect"]
    assert "unsupported" in reasons["line"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), result.model.eval()(x), rtol=1e-5, atol=1e-5)


def test_auto_times_each_conv_and_reports_its_choice(pruned) -> None:
    result, x = pruned
    rows = {row.name: row for row in pk.to_sparse(result, x).layers}
    for name in ("a", "b"):
        assert rows[name].dense_ms is not None and rows[name].sparse_ms is not None
        assert rows[name].kernel in ("csr", "dense")
    without_inputs = {row.name: row for row in pk.to_sparse(result).layers}
    assert without_inputs["a"].kernel == "dense" and "example_inputs" in without_inputs["a"].reason


def test_a_forced_kernel_a_named_conv_cannot_run_is_refused(pruned) -> None:
    result, x = pruned
    with pytest.raises(pk.SpecError, match="reflect"):
        pk.to_sparse(result, x, kernel={"reflect": "csr"})
    with pytest.raises(pk.SpecError, match="a "):
        pk.to_sparse(result, x, kernel={"a": "2:4"})


def test_sparse_convs_save_load_and_export(pruned, tmp_path: Path) -> None:
    result, x = pruned
    conversion = pk.to_sparse(result, x, kernel={"a": "csr", "b": "csr"})
    folder = pk.save(conversion, tmp_path / "convs")
    loaded = pk.load(folder, ConvNet).eval()
    assert isinstance(loaded.a, CSRConv2d) and isinstance(loaded.b, CSRConv2d)
    with torch.no_grad():
        assert torch.equal(loaded(x), conversion.model.eval()(x))
    pytest.importorskip("onnxruntime")
    pk.export_onnx(conversion.model, x, tmp_path / "convs.onnx")
    assert (tmp_path / "convs.onnx").stat().st_size > 0


def _every_conv_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from prunekit.sparse import conv_choice

    def winning(conv: nn.Conv2d, input_shape, *, min_sparsity: float, margin: float):
        return conv_choice.KernelChoice("csr", 2.0, 1.0, "csr 2.00x dense"), \
            CSRConv2d.from_conv(conv)

    monkeypatch.setattr(conv_choice, "choose_conv_kernel", winning, raising=True)


@pytest.mark.parametrize("speedup", [0.8, 1.3])
def test_sparse_convs_are_kept_only_if_the_whole_model_is_faster(
        pruned, monkeypatch: pytest.MonkeyPatch, speedup: float) -> None:
    # each conv wins its own timing; the whole converted model is then timed against dense
    # in its faster layout, and a loss undoes every sparse conv (Linear choices stay)
    from prunekit.sparse import convert
    from prunekit.sparse.whole_model import WholeModelTiming

    result, x = pruned
    _every_conv_wins(monkeypatch)
    timed: list[tuple[type, type]] = []

    def whole(dense: nn.Module, converted: nn.Module, inputs: torch.Tensor) -> WholeModelTiming:
        timed.append((type(dense.a), type(converted.a)))
        return WholeModelTiming(speedup, "channels_last")

    monkeypatch.setattr(convert, "time_whole_models", whole)
    conversion = pk.to_sparse(result, x)
    assert timed == [(nn.Conv2d, CSRConv2d)]  # timed once: dense against the converted model
    rows = {row.name: row for row in conversion.layers}
    kept = speedup > 1.0
    assert isinstance(conversion.model.a, CSRConv2d) is kept
    assert isinstance(conversion.model.b, CSRConv2d) is kept
    assert (rows["a"].kernel == "csr") is kept
    if not kept:
        assert "0.80x" in rows["a"].reason and "stay dense" in rows["a"].reason
    assert conversion.whole_model is not None and "whole model" in conversion.summary()
    with torch.no_grad():
        torch.testing.assert_close(conversion.model.eval()(x), result.model.eval()(x),
                                   rtol=1e-5, atol=1e-5)


def test_forced_kernels_skip_the_whole_model_timing(pruned, monkeypatch) -> None:
    from prunekit.sparse import convert

    def never(*args: object) -> None:
        raise AssertionError("a forced kernel is not timed")

    monkeypatch.setattr(convert, "time_whole_models", never)
    result, x = pruned
    assert pk.to_sparse(result, x, kernel="csr").whole_model is None


def test_a_sparse_conv_copied_in_inference_mode_runs(pruned) -> None:
    # inference tensors have no version counter: the kernel's plan cache must not need one
    import copy

    result, x = pruned
    model = pk.to_sparse(result, x, kernel="csr").model.eval()
    expected = model(x).detach()
    with torch.inference_mode():
        twin = copy.deepcopy(model)
        torch.testing.assert_close(twin(x), expected)
        torch.testing.assert_close(twin(x), expected)  # the kept plan, second call
