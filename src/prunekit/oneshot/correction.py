"""Bias correction after one-shot pruning (a pure function).

Pruning a Linear layer shifts its mean output over the calibration tokens by
``(W_dense - W_pruned) @ mean(x)``. Adding that shift to the bias removes it exactly, so the
pruned layer's mean output on the inputs it saw equals the unpruned layer's; the rest of
the error (each token's deviation from the mean) is untouched. When the target is the
unpruned *model*'s output of the layer (``reconstruct="dense"``), its own mean input
``mean(x_dense)`` takes the place of ``mean(x)`` in the dense term.
"""

from __future__ import annotations

import torch


def corrected_bias(
    bias: torch.Tensor,
    dense_weight: torch.Tensor,
    pruned_weight: torch.Tensor,
    input_mean: torch.Tensor,
    dense_input_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """``bias + W_dense @ mean(x_dense) - W_pruned @ mean(x)``, in the bias's dtype.

    Args:
        bias: the layer's bias, (out,).
        dense_weight: the weight before pruning, (out, in).
        pruned_weight: the weight after pruning (and any reconstruction), (out, in).
        input_mean: the mean input over the calibration tokens, (in,).
        dense_input_mean: the unpruned model's mean input to the layer, (in,); defaults to
            ``input_mean`` (the layer's own unpruned output is the target).

    Returns:
        The corrected bias, (out,).
    """
    dense_mean = input_mean if dense_input_mean is None else dense_input_mean
    dense_out = dense_weight.double() @ dense_mean.double()  # (out,)
    shift = dense_out - pruned_weight.double() @ input_mean.double()
    return (bias.double() + shift).to(bias.dtype)
