"""Bias correction after one-shot pruning (a pure function).

Pruning a Linear layer shifts its mean output over the calibration tokens by
``(W_dense - W_pruned) @ mean(x)``. Adding that shift to the bias removes it exactly, so the
pruned layer's mean output on the inputs it saw equals the unpruned layer's; the rest of
the error (each token's deviation from the mean) is untouched.
"""

from __future__ import annotations

import torch


def corrected_bias(
    bias: torch.Tensor,
    dense_weight: torch.Tensor,
    pruned_weight: torch.Tensor,
    input_mean: torch.Tensor,
) -> torch.Tensor:
    """``bias + (W_dense - W_pruned) @ mean(x)``, in the bias's dtype.

    Args:
        bias: the layer's bias, (out,).
        dense_weight: the weight before pruning, (out, in).
        pruned_weight: the weight after pruning (and any reconstruction), (out, in).
        input_mean: the mean input over the calibration tokens, (in,).

    Returns:
        The corrected bias, (out,).
    """
    shift = (dense_weight.double() - pruned_weight.double()) @ input_mean.double()  # (out,)
    return (bias.double() + shift).to(bias.dtype)
