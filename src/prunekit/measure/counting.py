"""Counting parameters, nonzeros and multiply-accumulates (MACs) of a model.

MACs come from torch's own FLOP counter (:class:`torch.utils.flop_counter.FlopCounterMode`),
which counts the matrix products and convolutions of one forward pass; ``MACs = FLOPs / 2``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..inputs import ExampleInputs, call_model, eval_mode
from ..result import PruneResult, model_of


def count_params(model: nn.Module | PruneResult) -> int:
    """Number of parameters of ``model`` (shared parameters counted once).

    Args:
        model: any module.

    Returns:
        The total element count of ``model.parameters()``.
    """
    model = model_of(model, "model")
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: nn.Module | PruneResult) -> int:
    """Number of nonzero parameter values (masked weights count their effective zeros).

    Args:
        model: any module; a masked weight (``weight_orig`` + ``weight_mask``) counts the
            nonzeros of ``weight_orig * weight_mask``.

    Returns:
        The count of nonzero values over all parameters.
    """
    model = model_of(model, "model")
    total = 0
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            mask = getattr(module, name[: -len("_orig")] + "_mask", None) if name.endswith(
                "_orig"
            ) else None
            value = param.detach() * mask if isinstance(mask, torch.Tensor) else param.detach()
            total += int(torch.count_nonzero(value))
    return total


def count_macs(model: nn.Module | PruneResult, example_inputs: ExampleInputs) -> int:
    """Multiply-accumulates of one forward pass on ``example_inputs`` (eval mode, no grad).

    Args:
        model: any module.
        example_inputs: a tensor, a tuple of positional arguments or a dict of keyword
            arguments, as for :func:`prunekit.prune`.

    Returns:
        ``FLOPs // 2`` as counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix
        products, convolutions and attention; elementwise ops are not counted).

    Example:
        >>> import torch
        >>> count_macs(torch.nn.Linear(8, 4, bias=False), torch.randn(2, 8))
        64
    """
    model = model_of(model, "model")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), eval_mode(model), _frozen(model), counter:
        call_model(model, example_inputs)
    return int(counter.get_total_flops()) // 2


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Parameters' ``requires_grad`` off while counting, restored after: the counter's module
    tracker fails on a model that hands a parameter itself to a submodule (timm's PiT passes
    ``cls_token`` to its stages)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
