"""Reconstructing the unpruned model's layer outputs (a pure function).

SparseGPT as published makes each pruned layer reproduce its *own* unpruned output on the
inputs it now receives, ``W X_p``. Those inputs already carry the error of the layers
pruned before it, which then nothing corrects. With ``reconstruct="dense"`` the target is
the unpruned model's output of the layer, ``W X_d`` (``X_d``: what the unpruned model feeds
it, token for token). Since ``||W X_d - W' X_p||^2 = ||W* X_p - W' X_p||^2 + const`` with

    W* = W X_d X_p^T (X_p X_p^T)^-1,

this is SparseGPT run on ``W*`` instead of ``W``. A ridge term pulls ``W*`` towards ``W``
rather than towards zero: with few calibration tokens the exact optimum fits their noise,
and where nothing drifted (``X_p = X_d``) ``W* = W`` whatever the ridge.
"""

from __future__ import annotations

import torch


def dense_target_weight(
    weight: torch.Tensor, xtx: torch.Tensor, cross: torch.Tensor, ridge: float
) -> torch.Tensor:
    """``(W cross^T + lam W) (xtx + lam I)^-1`` with ``lam = ridge * mean(diag(xtx))``.

    Args:
        weight: the unpruned weight ``W``, (out, in).
        xtx: ``sum_t x_p x_p^T`` over the calibration tokens (pruned-model inputs), (in, in).
        cross: ``sum_t x_p x_d^T`` (pruned-model inputs against unpruned ones), (in, in).
        ridge: > 0, relative to the mean input energy.

    Returns:
        ``W*`` in float64, (out, in), on the weight's device; ``W`` itself (as float64) if
        ``ridge <= 0`` or no input was ever non-zero.
    """
    w = weight.detach().double()
    if ridge <= 0.0:
        return w.clone()
    h = xtx.double()
    energy = h.diagonal().mean()
    # No input ever non-zero (xtx = cross = 0): any lam > 0 gives W* = W exactly; 1 keeps
    # h invertible without reading the value back to the host.
    lam = torch.where(energy > 0, ridge * energy, torch.ones_like(energy))
    rhs = w @ cross.double().t() + lam * w  # (out, in)
    h = h + torch.diag_embed(lam.expand(h.shape[0]))
    # h is symmetric positive definite, so rhs @ h^-1 = (h^-1 @ rhs^T)^T
    return torch.cholesky_solve(rhs.t(), torch.linalg.cholesky(h)).t()
