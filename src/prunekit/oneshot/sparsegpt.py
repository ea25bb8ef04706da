"""SparseGPT: prune and reconstruct a layer with its input Hessian (pure functions).

Reference: Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately
Pruned in One-Shot" (2023). Columns are processed left to right in blocks; inside a block
the mask is chosen by ``w^2 / [H^-1]_jj^2`` and each pruned weight's error is spread over
the not-yet-processed columns of its row (optimal brain surgeon update). Updates to the
columns after a block are applied lazily, once per block, as one matrix product.
"""

from __future__ import annotations

import torch

from ..errors import CalibrationError
from ..select.unstructured import lowest_k_mask, removal_count


def inverse_hessian_factor(xtx: torch.Tensor, n_tokens: int, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of ``(2/n X^T X + damp * mean(diag) I)^-1``, computed in place.

    Input features that were always zero get a unit diagonal so the matrix stays invertible.
    ``xtx`` is consumed: its memory becomes the factor, so inverting the widest layer's
    Hessian needs no second matrix of its size (the caller must not read ``xtx`` afterwards).
    The arithmetic runs in ``xtx``'s dtype on its device; no value is read back to the host.

    Args:
        xtx: the layer's input Gram matrix ``sum_t x_t x_t^T``, (in, in), symmetric,
            float32 or float64.
        n_tokens: how many tokens it sums over.
        damp: dampening, relative to the mean diagonal.

    Returns:
        The upper Cholesky factor, (in, in), a column-major view of ``xtx``'s storage.

    Raises:
        CalibrationError: the Hessian is not positive definite even after damping.
    """
    h = xtx.mul_(2.0 / max(n_tokens, 1))  # (in, in)
    diagonal = h.diagonal()  # a view: writing it writes h
    diagonal.masked_fill_(diagonal == 0, 1.0)  # dead input features
    diagonal.add_(damp * diagonal.mean())
    # h is symmetric, so its transpose is the same matrix in the column-major layout LAPACK
    # works in: the three factorisations then overwrite it without a copy.
    f = h.mT
    try:
        torch.linalg.cholesky(f, out=f)  # lower factor L
        torch.cholesky_inverse(f, out=f)  # (L L^T)^-1 = H^-1
        torch.linalg.cholesky(f, upper=True, out=f)
    except RuntimeError as exc:  # torch.linalg.LinAlgError derives from RuntimeError
        raise CalibrationError(
            f"the calibration Hessian is not positive definite: {exc}",
            "use more calibration tokens or a larger damping (damp=0.1)",
        ) from exc
    return f


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype SparseGPT updates a weight in: float32 for 16-bit weights (ample for a
    result rounded to 8 or 11 mantissa bits, and half the memory of the widest layer's copy),
    float64 otherwise."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else torch.float64


def _block_mask(
    w_block: torch.Tensor,
    hinv_diag: torch.Tensor,
    sparsity: float,
    removed: torch.Tensor,
) -> torch.Tensor:
    """Pruned-mask (True = remove) of one column block for unstructured sparsity."""
    saliency = w_block.pow(2) / hinv_diag.pow(2).unsqueeze(0)  # (out, block)
    saliency = saliency.masked_fill(removed, -torch.inf)
    return ~lowest_k_mask(saliency, removal_count(saliency.numel(), sparsity))


def _nm_group_mask(
    w_group: torch.Tensor, hinv_diag: torch.Tensor, n_keep: int, removed: torch.Tensor
) -> torch.Tensor:
    """Pruned-mask (True = remove) of ``m`` consecutive columns: keep ``n_keep`` per row."""
    saliency = w_group.pow(2) / hinv_diag.pow(2).unsqueeze(0)  # (out, m)
    saliency = saliency.masked_fill(removed, -torch.inf)
    top = saliency.topk(n_keep, dim=1).indices
    return ~torch.zeros_like(saliency, dtype=torch.bool).scatter_(1, top, True)


def sparsegpt_prune(
    weight: torch.Tensor,
    hinv_upper: torch.Tensor,
    *,
    sparsity: float | None = None,
    nm: tuple[int, int] | None = None,
    already_removed: torch.Tensor | None = None,
    block_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune a (out, in) weight with SparseGPT.

    Args:
        weight: the layer weight, (out, in).
        hinv_upper: :func:`inverse_hessian_factor` of the layer's inputs, (in, in).
        sparsity: fraction removed in every column block (unstructured).
        nm: ``(n_keep, m)`` along the input dimension; ``block_size`` must be a multiple of m.
        already_removed: True where weights are already pruned (they stay pruned).
        block_size: columns per lazy-update block.

    Returns:
        ``(new_weight, keep_mask)``: the reconstructed weight (pruned entries exactly 0, in
        the input dtype) and the boolean keep-mask, both on the weight's device (the
        weight's arithmetic runs there, in :func:`work_dtype`, whatever the factor's dtype).
    """
    w = weight.detach().to(work_dtype(weight.dtype), copy=True)  # (out, in), one copy
    n_out, n_in = w.shape
    removed_before = (
        already_removed if already_removed is not None
        else torch.zeros_like(w, dtype=torch.bool)
    )
    if nm is not None:
        block_size = max(nm[1], block_size - block_size % nm[1])
    pruned = torch.zeros_like(w, dtype=torch.bool)
    for start in range(0, n_in, block_size):
        end = min(start + block_size, n_in)
        w1 = w[:, start:end].clone()  # (out, block)
        hinv1 = hinv_upper[start:end, start:end].to(w.dtype)  # (block, block)
        err1 = torch.zeros_like(w1)
        diag = torch.diag(hinv1)
        mask1 = (
            _block_mask(w1, diag, sparsity, removed_before[:, start:end])
            if nm is None and sparsity is not None
            else torch.zeros_like(w1, dtype=torch.bool)
        )
        for i in range(end - start):
            if nm is not None and i % nm[1] == 0:
                cols = slice(i, i + nm[1])
                mask1[:, cols] = _nm_group_mask(
                    w1[:, cols], diag[cols], nm[0], removed_before[:, start:end][:, cols]
                )
            col = w1[:, i]
            q = col.masked_fill(mask1[:, i], 0.0)
            err = (col - q) / hinv1[i, i]  # (out,)
            w1[:, i:] -= err.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            w1[:, i] = q
            err1[:, i] = err
        w[:, start:end] = w1
        pruned[:, start:end] = mask1
        # lazy batch update, in place: no (out, in - end) temporary
        w[:, end:].addmm_(err1, hinv_upper[start:end, end:].to(w.dtype), alpha=-1.0)
    w.masked_fill_(pruned, 0.0)
    return w.to(weight.dtype), ~pruned
