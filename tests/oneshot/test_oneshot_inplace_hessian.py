"""SparseGPT's memory-lean arithmetic equals the textbook formulas it replaces."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.oneshot.calibration import InputStats
from prunekit.oneshot.sparsegpt import inverse_hessian_factor, sparsegpt_prune, work_dtype
from prunekit.sequential.memory import return_freed_memory


def _reference_factor(xtx: torch.Tensor, n: int, damp: float) -> torch.Tensor:
    h = xtx.double() * (2.0 / n)
    h.diagonal().masked_fill_(h.diagonal() == 0, 1.0)
    h.diagonal().add_(damp * h.diagonal().mean())
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_in_place_factor_equals_the_three_step_formula_and_reuses_the_gram(
    dtype: torch.dtype, tol: float
) -> None:
    x = torch.randn(200, 48, dtype=torch.float64)
    x[:, 5] = 0.0  # a dead input feature
    xtx = (x.t() @ x).to(dtype)
    expected = _reference_factor(xtx, 200, 0.01)
    factor = inverse_hessian_factor(xtx, 200, 0.01)
    assert factor.dtype == dtype
    assert factor.data_ptr() == xtx.data_ptr()  # no second matrix of the Hessian's size
    assert torch.allclose(factor.double(), expected, rtol=tol, atol=tol)
    assert torch.equal(factor.triu(), factor)


def test_gram_is_float32_and_summed_in_place_over_passes() -> None:
    layer = nn.Linear(12, 4)
    stats = InputStats({"weight": layer}, gram=True)
    batches = [torch.randn(3, 7, 12) for _ in range(3)]
    with torch.no_grad():
        for batch in batches:
            layer(batch)
    stats.remove()
    rows = torch.cat([b.reshape(-1, 12) for b in batches]).double()
    assert stats.xtx["weight"].dtype == torch.float32
    assert torch.allclose(stats.xtx["weight"].double(), rows.t() @ rows, rtol=1e-5, atol=1e-4)
    assert stats.sq_sum["weight"].dtype == torch.float64 and stats.count["weight"] == 63


def test_sparsegpt_on_float32_and_float64_factors_picks_the_same_weights() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 64, dtype=torch.float64) * torch.linspace(0.1, 3.0, 64)
    weight = torch.randn(32, 64)
    xtx = x.t() @ x
    w64, keep64 = sparsegpt_prune(weight, inverse_hessian_factor(xtx.clone(), 256, 0.01),
                                  sparsity=0.5, block_size=16)
    w32, keep32 = sparsegpt_prune(weight, inverse_hessian_factor(xtx.float(), 256, 0.01),
                                  sparsity=0.5, block_size=16)
    assert torch.equal(keep32, keep64)
    assert torch.allclose(w32, w64, atol=1e-4)
    assert abs(keep64.float().mean().item() - 0.5) < 1e-6


def test_returning_freed_memory_is_harmless() -> None:
    big = torch.ones(4 << 20)
    del big
    assert isinstance(return_freed_memory(), bool)


def test_sixteen_bit_weights_are_updated_in_float32_with_the_same_choice() -> None:
    assert work_dtype(torch.bfloat16) == work_dtype(torch.float16) == torch.float32
    assert work_dtype(torch.float32) == torch.float64
    torch.manual_seed(1)
    x = torch.randn(256, 64, dtype=torch.float64) * torch.linspace(0.1, 3.0, 64)
    weight = torch.randn(32, 64).to(torch.bfloat16)
    xtx = (x.t() @ x).float()
    w16, keep16 = sparsegpt_prune(weight, inverse_hessian_factor(xtx.clone(), 256, 0.01),
                                  sparsity=0.5, block_size=16)
    w64, keep64 = sparsegpt_prune(weight.float(), inverse_hessian_factor(xtx, 256, 0.01),
                                  sparsity=0.5, block_size=16)
    assert w16.dtype == torch.bfloat16 and torch.equal(keep16, keep64)
    assert torch.allclose(w16.float(), w64, rtol=1e-2, atol=1e-2)  # bf16 rounding
