"""Gradients summed over calibration batches: the one loop behind every Taylor score.

Channel scores (:func:`prunekit.importance.channel.output_energy_gradients`) and
transformer head / neuron scores (:func:`prunekit.hf.importance.loss_gradients`) differ in
the loss they differentiate and the parameters they need; both run this loop. Gradients
are taken with :func:`torch.autograd.grad` (the parameters' ``.grad`` are never touched)
and summed in float64 on each parameter's own device, so a bf16 / fp16 model's scores do
not lose precision over many batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..inputs import eval_mode

BatchLoss = Callable[[nn.Module, Any, int], torch.Tensor | None]  # (model, batch, index)


def summed_gradients(
    model: nn.Module,
    params: Mapping[str, nn.Parameter],
    batches: Iterable[Any],
    loss_of: BatchLoss,
) -> tuple[dict[str, torch.Tensor], int]:
    """``sum over batches of dL/dp`` for every parameter in ``params``.

    The model runs in eval mode with gradients on; each parameter's ``requires_grad`` is
    switched on for the passes and restored after, and nothing else about the model
    changes.

    Args:
        model: the model to run.
        params: ``{name: parameter}`` to differentiate.
        batches: the calibration batches.
        loss_of: ``fn(model, batch, index)`` returning the scalar loss of one batch, or
            None when the batch contributes nothing.

    Returns:
        ``({name: float64 gradient sum on the parameter's device}, batches run)``; a
        parameter the loss never reaches is left out.
    """
    names = list(params)
    tensors = [params[n] for n in names]
    flags = [p.requires_grad for p in tensors]
    sums: dict[str, torch.Tensor] = {}
    count = 0
    try:
        for p in tensors:
            p.requires_grad_(True)
        with torch.enable_grad(), eval_mode(model):
            for index, batch in enumerate(batches):
                count += 1
                loss = loss_of(model, batch, index)
                if loss is None or not loss.requires_grad:
                    continue
                grads = torch.autograd.grad(loss, tensors, allow_unused=True)
                for name, grad in zip(names, grads, strict=True):
                    if grad is not None:
                        _add(sums, name, grad)
    finally:
        for p, flag in zip(tensors, flags, strict=True):
            p.requires_grad_(flag)
    return sums, count


def _add(sums: dict[str, torch.Tensor], name: str, grad: torch.Tensor) -> None:
    if name in sums:
        sums[name] += grad.detach().double()
    else:
        sums[name] = grad.detach().double()
