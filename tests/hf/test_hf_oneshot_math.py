"""Wanda and SparseGPT selection / reconstruction as pure functions, against oracles."""

from __future__ import annotations

import pytest
import torch

from prunekit.errors import SpecError
from prunekit.oneshot.allocation import outlier_ratio, owl_sparsities
from prunekit.oneshot.sparsegpt import inverse_hessian_factor, sparsegpt_prune
from prunekit.oneshot.wanda import wanda_mask
from prunekit.select.nm import is_nm


def test_wanda_removes_exact_fraction_of_every_row() -> None:
    w = torch.randn(6, 40)
    keep = wanda_mask(w, torch.rand(40) + 0.1, sparsity=0.5)
    assert keep.sum(dim=1).tolist() == [20] * 6


def test_wanda_with_equal_input_norms_is_row_wise_magnitude() -> None:
    w = torch.randn(5, 16)
    keep = wanda_mask(w, torch.full((16,), 3.0), sparsity=0.25)
    expected = w.abs() > w.abs().kthvalue(4, dim=1, keepdim=True).values  # 4 of 16 go
    assert torch.equal(keep, expected)


def test_wanda_keeps_weights_on_loud_inputs() -> None:
    w = torch.full((4, 8), 0.1)
    w[:, 0] = 0.01  # smallest weights, but on an input 100x larger than the rest
    norms_sq = torch.ones(8)
    norms_sq[0] = 100.0**2
    keep = wanda_mask(w, norms_sq, sparsity=0.5)
    assert keep[:, 0].all()


def test_wanda_nm_pattern() -> None:
    keep = wanda_mask(torch.randn(8, 32), torch.rand(32), nm=(2, 4))
    assert is_nm(keep, 2, 4) and int(keep.sum()) == 8 * 16


def test_wanda_keeps_already_removed_weights_removed() -> None:
    w = torch.randn(3, 8)
    removed = torch.zeros(3, 8, dtype=torch.bool)
    removed[:, 7] = True
    w[:, 7] = 100.0  # large, but already pruned
    keep = wanda_mask(w, torch.ones(8), sparsity=0.5, already_removed=removed)
    assert not keep[:, 7].any()


def _layer_error(x: torch.Tensor, w: torch.Tensor, w_new: torch.Tensor) -> float:
    return float((x @ w.t() - x @ w_new.t()).pow(2).sum())


def test_sparsegpt_beats_magnitude_on_its_calibration_data() -> None:
    torch.manual_seed(0)
    mix = torch.randn(32, 32)
    x = torch.randn(512, 32) @ mix  # correlated inputs: reconstruction matters
    w = torch.randn(16, 32)
    hinv = inverse_hessian_factor(x.t() @ x, x.shape[0], damp=0.01)
    w_new, keep = sparsegpt_prune(w, hinv, sparsity=0.5, block_size=8)
    assert int((~keep).sum()) == 16 * 16
    assert bool((w_new[~keep] == 0).all())
    magnitude = w * (w.abs() > w.abs().median())
    assert _layer_error(x, w, w_new) < 0.7 * _layer_error(x, w, magnitude)


def test_sparsegpt_with_white_inputs_is_magnitude_pruning() -> None:
    # X^T X = n I: the inverse Hessian is diagonal, so no error is spread and the
    # saliency w^2 / [H^-1]_jj^2 ranks like |w| inside every block.
    w = torch.randn(4, 16)
    hinv = inverse_hessian_factor(torch.eye(16) * 100.0, 100, damp=0.0)
    w_new, keep = sparsegpt_prune(w, hinv, sparsity=0.5, block_size=16)
    k = 32
    threshold = w.abs().reshape(-1).kthvalue(k).values
    assert torch.equal(keep, w.abs() > threshold)
    assert torch.allclose(w_new, w * keep, atol=1e-6)


def test_sparsegpt_nm_pattern_and_updates() -> None:
    x = torch.randn(256, 16) @ torch.randn(16, 16)
    w = torch.randn(8, 16)
    hinv = inverse_hessian_factor(x.t() @ x, 256, damp=0.01)
    w_new, keep = sparsegpt_prune(w, hinv, nm=(2, 4))
    assert is_nm(keep, 2, 4) and int(keep.sum()) == 8 * 8
    assert bool((w_new[~keep] == 0).all())
    assert not torch.allclose(w_new[keep], w[keep])  # kept weights were updated


def test_dead_inputs_do_not_break_the_hessian() -> None:
    x = torch.randn(64, 8)
    x[:, 3] = 0.0
    hinv = inverse_hessian_factor(x.t() @ x, 64, damp=0.01)
    w_new, keep = sparsegpt_prune(torch.randn(4, 8), hinv, sparsity=0.5)
    assert torch.isfinite(w_new).all() and int((~keep).sum()) == 16


def test_wanda_ties_still_remove_the_exact_count() -> None:
    w = torch.ones(3, 8)
    w[0, :5] = 0.0  # five tied lowest scores, four to remove: the first four go
    keep = wanda_mask(w, torch.ones(8), sparsity=0.5)
    assert keep.sum(dim=1).tolist() == [4, 4, 4]
    assert keep[0].tolist() == [False] * 4 + [True] * 4


def test_owl_sparsities_keep_the_weighted_total_and_favour_outliers() -> None:
    ratios = {"a": 0.01, "b": 0.03, "c": 0.02}
    sizes = {"a": 100, "b": 300, "c": 600}
    result = owl_sparsities(ratios, sizes, 0.5, lam=0.08)
    total = sum(result[k] * sizes[k] for k in sizes) / sum(sizes.values())
    assert total == pytest.approx(0.5, abs=1e-12)
    assert result["b"] < result["c"] < result["a"]
    assert result["a"] - result["b"] == pytest.approx(0.16)


def test_owl_sparsities_are_uniform_when_ratios_are_equal() -> None:
    assert owl_sparsities({"a": 0.1, "b": 0.1}, {"a": 1, "b": 5}, 0.6) == {"a": 0.6, "b": 0.6}


def test_owl_sparsities_out_of_range_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="allocation"):
        owl_sparsities({"a": 0.0, "b": 1.0}, {"a": 1, "b": 1}, 0.02, lam=0.08)


def test_outlier_ratio_counts_scores_above_m_times_the_mean() -> None:
    scores = [torch.ones(9), torch.tensor([100.0])]  # mean 10.9: one score above 5x mean
    assert outlier_ratio(scores, m=5.0) == pytest.approx(0.1)
