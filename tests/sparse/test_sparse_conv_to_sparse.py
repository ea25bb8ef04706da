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
