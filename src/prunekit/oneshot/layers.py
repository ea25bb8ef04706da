"""Pruning one layer from its calibration statistics (Wanda or SparseGPT, in place).

Linear, Hugging Face's transposed ``Conv1D`` and ``Conv2d`` weights (see :mod:`.conv`) are
handled as (out, in) matrices;
the result is the masked end state, with SparseGPT's reconstructed values written into the
trainable weight and, on request, the bias corrected.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..apply.masks import apply_mask, effective_weight, existing_mask
from .calibration import InputStats
from .conv import conv_matrix, conv_storage
from .correction import corrected_bias
from .paired import PairedInputStats
from .reconstruct import dense_target_weight
from .sparsegpt import inverse_hessian_factor, sparsegpt_prune
from .wanda import wanda_mask


@dataclass(frozen=True)
class OneShotSettings:
    """What to do to each layer: method, per-layer sparsity or N:M, allocation, SparseGPT knobs."""

    method: str
    sparsity: Mapping[str, float]
    nm: tuple[int, int] | None
    allocation: str = "uniform"
    damp: float = 0.01
    block_size: int = 128
    bias_correction: bool = False
    reconstruct: str = "layer"
    ridge: float = 0.5  # pull of W* towards W for reconstruct="dense" (see .reconstruct)
    across_ranks: bool = False  # each rank ran its share: sum statistics over ranks first


def hf_conv1d_type() -> tuple[type[nn.Module], ...]:
    """Hugging Face's transposed-weight ``Conv1D`` (GPT-2), if transformers is loaded."""
    module = sys.modules.get("transformers.pytorch_utils")
    conv1d = getattr(module, "Conv1D", None) if module is not None else None
    return (conv1d,) if isinstance(conv1d, type) else ()


def is_transposed(module: nn.Module) -> bool:
    """True for weights stored (in, out), as Hugging Face's Conv1D stores them."""
    return isinstance(module, hf_conv1d_type())


def as_matrix(module: nn.Module, stored: torch.Tensor) -> torch.Tensor:
    """A tensor of the weight's storage shape as the (out, in) matrix the methods prune."""
    if is_transposed(module):
        return stored.t()
    if isinstance(module, nn.Conv2d):
        return conv_matrix(stored)
    return stored


def as_stored(module: nn.Module, matrix: torch.Tensor) -> torch.Tensor:
    """Undo :func:`as_matrix`: an (out, in) matrix in the weight's storage shape."""
    if is_transposed(module):
        return matrix.t().contiguous()
    if isinstance(module, nn.Conv2d):
        return conv_storage(matrix, effective_weight(module).shape)
    return matrix


def layer_matrix(module: nn.Module) -> torch.Tensor:
    """The weight as (out, in), whatever the module's storage order."""
    return as_matrix(module, effective_weight(module))


def _removed(module: nn.Module) -> torch.Tensor | None:
    mask = existing_mask(module)
    if mask is None:
        return None
    return ~as_matrix(module, mask)


def prune_layer(
    module: nn.Module, key: str, stats: InputStats | PairedInputStats,
    settings: OneShotSettings,
) -> torch.Tensor:
    """Prune one layer from its calibration statistics; return its keep-mask (storage order,
    on the CPU like every plan's masks; the layer's own mask buffer stays on its device).

    With paired statistics SparseGPT reconstructs the unpruned model's output of the layer
    (see :mod:`.reconstruct`). With ``settings.bias_correction`` the layer's bias (if it has
    one) then absorbs the mean output shift left on the calibration tokens (see
    :mod:`.correction`). SparseGPT consumes the layer's matrices in ``stats`` (its Gram
    matrix is inverted in place and dropped from ``stats``).
    """
    weight = layer_matrix(module)  # (out, in); neither method writes into it
    dense = weight.clone() if settings.bias_correction else None  # before pruning
    sparsity = settings.sparsity.get(key)
    removed = _removed(module)
    if settings.method == "wanda":
        assert isinstance(stats, InputStats)  # reconstruct="dense" is SparseGPT only
        keep = wanda_mask(weight, stats.sq_sum[key], sparsity=sparsity, nm=settings.nm,
                          already_removed=removed)
        new_weight = None
    else:
        if isinstance(stats, PairedInputStats):
            weight = dense_target_weight(weight, stats.xtx[key], stats.cross.pop(key),
                                         settings.ridge)
        # the Gram matrix is consumed (inverted in place): a block's layers then never hold
        # more than the statistics not yet used plus one factor
        hinv = inverse_hessian_factor(stats.xtx.pop(key), stats.count[key], settings.damp)
        new_weight, keep = sparsegpt_prune(
            weight, hinv, sparsity=sparsity, nm=settings.nm, already_removed=removed,
            block_size=settings.block_size,
        )
    keep = as_stored(module, keep)
    new_weight = None if new_weight is None else as_stored(module, new_weight)
    if new_weight is not None:
        param = getattr(module, "weight_orig", None)
        target = param if isinstance(param, nn.Parameter) else effective_weight_param(module)
        with torch.no_grad():
            target.copy_(new_weight.to(dtype=target.dtype))
    apply_mask(module, keep)
    if dense is not None:
        dense_mean = stats.dense_mean(key) if isinstance(stats, PairedInputStats) else None
        correct_bias(module, dense, stats.mean(key), dense_mean)
    return keep.cpu()


def correct_bias(module: nn.Module, dense_weight: torch.Tensor, input_mean: torch.Tensor,
                 dense_input_mean: torch.Tensor | None) -> None:
    """Add ``W_dense @ mean(x_dense) - W_pruned @ mean(x)`` to the module's bias; no bias,
    no change."""
    bias = getattr(module, "bias", None)
    if not isinstance(bias, torch.Tensor):
        return
    with torch.no_grad():
        bias.copy_(corrected_bias(bias, dense_weight, layer_matrix(module), input_mean,
                                  dense_input_mean))


def effective_weight_param(module: nn.Module) -> nn.Parameter:
    """The module's ``weight`` Parameter (unmasked module)."""
    weight = module.weight
    assert isinstance(weight, nn.Parameter)
    return weight
