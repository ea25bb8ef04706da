"""The compiled CSR kernel: same outputs as dense, and torch's kernel where it cannot run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.sparse import CSRLinear, kernels

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba not installed")


def _pruned_linear(inp: int, out: int, sparsity: float, bias: bool, dtype: torch.dtype) -> nn.Linear:
    lin = nn.Linear(inp, out, bias=bias, dtype=dtype)
    with torch.no_grad():
        lin.weight.mul_(torch.rand_like(lin.weight) >= sparsity)
        lin.weight[3].zero_()  # an empty row
        lin.weight[5, :7] = 1.0  # a row whose kept count is not a multiple of 4
    return lin


def _count_kernel_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = kernels.csr_linear

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(kernels, "csr_linear", counted)
    return calls


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [kernels.MIN_ROWS, 67])
def test_kernel_matches_dense(monkeypatch, dtype, bias, rows):
    lin = _pruned_linear(70, 37, 0.85, bias, dtype)
    sparse = CSRLinear.from_linear(lin)
    calls = _count_kernel_calls(monkeypatch)
    x = torch.randn(rows, 70, dtype=dtype)
    with torch.no_grad():
        out = sparse(x)
        expected = lin(x)
    assert calls, "the compiled kernel did not run"
    assert out.shape == expected.shape and out.is_contiguous()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(out, expected, **tol)


@needs_numba
def test_kernel_runs_on_leading_dims_and_threads(monkeypatch):
    lin = _pruned_linear(64, 48, 0.9, True, torch.float32)
    sparse = CSRLinear.from_linear(lin)
    calls = _count_kernel_calls(monkeypatch)
    x = torch.randn(4, 20, 64)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                torch.testing.assert_close(sparse(x), lin(x), rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(before)
    assert len(calls) == 2


def test_torch_kernel_below_min_rows_with_gradients_and_without_numba(monkeypatch):
    lin = _pruned_linear(64, 48, 0.9, True, torch.float32)
    sparse = CSRLinear.from_linear(lin)
    calls = _count_kernel_calls(monkeypatch)
    x = torch.randn(kernels.MIN_ROWS - 1, 64)  # too few rows
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), lin(x), rtol=1e-5, atol=1e-5)
    x = torch.randn(64, 64, requires_grad=True)  # a gradient is needed: torch's kernel has one
    sparse(x).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, lin.weight.detach().sum(0).expand(64, 64))
    monkeypatch.setattr(kernels, "numba", None)  # numba not installed
    assert not kernels.available()
    x = torch.randn(64, 64)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), lin(x), rtol=1e-5, atol=1e-5)
    monkeypatch.undo()
    half = CSRLinear.from_linear(lin).to(torch.float16)  # fp16 is not a kernel dtype
    assert not kernels.usable(torch.randn(64, 64, dtype=torch.float16), half.values)
    assert calls == []
