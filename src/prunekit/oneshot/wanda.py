"""Wanda: prune by ``|W| * ||x||``, compared within each output row (pure functions).

Reference: Sun et al., "A Simple and Effective Pruning Approach for Large Language Models"
(2023). A weight's score is its magnitude times the L2 norm of the input feature it
multiplies, over the calibration tokens.
"""

from __future__ import annotations

import torch

from ..select.nm import nm_mask
from ..select.unstructured import removal_count


def wanda_scores(weight: torch.Tensor, input_sq_sum: torch.Tensor) -> torch.Tensor:
    """``|W_ij| * ||x_j||_2`` for a (out, in) weight and per-feature sums of squares (in,)."""
    return weight.abs().float() * input_sq_sum.sqrt().float().unsqueeze(0)  # (out, in)


def row_masks(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask removing exactly ``sparsity`` of every output row's lowest scores."""
    k = removal_count(scores.shape[1], sparsity)
    if not k:
        return torch.ones_like(scores, dtype=torch.bool)
    kth = scores.kthvalue(k, dim=1, keepdim=True).values  # (out, 1): O(in) per row
    keep = scores > kth
    tied = (~keep).sum(dim=1) != k  # rows where ties at the k-th value remove too many
    if bool(tied.any()):
        rows = scores[tied]
        lowest = rows.argsort(dim=1, stable=True)[:, :k]  # ties broken by position
        keep[tied] = torch.ones_like(rows, dtype=torch.bool).scatter_(1, lowest, False)
    return keep


def wanda_mask(
    weight: torch.Tensor,
    input_sq_sum: torch.Tensor,
    *,
    sparsity: float | None = None,
    nm: tuple[int, int] | None = None,
    already_removed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Wanda keep-mask of a (out, in) weight: row-wise ``sparsity`` or ``nm=(n_keep, m)``.

    Args:
        weight: the layer weight, (out, in).
        input_sq_sum: sum over calibration tokens of each input feature squared, (in,).
        sparsity: fraction removed per output row (unstructured).
        nm: ``(n_keep, m)`` for N:M along the input dimension.
        already_removed: bool mask (True = already pruned) that must stay removed.

    Returns:
        Boolean keep-mask of the weight's shape.
    """
    scores = wanda_scores(weight, input_sq_sum)
    if already_removed is not None:
        scores = scores.masked_fill(already_removed, -torch.inf)
    if nm is not None:
        return nm_mask(scores, nm[0], nm[1], input_dim=1)
    assert sparsity is not None
    return row_masks(scores, sparsity)
