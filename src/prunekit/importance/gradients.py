"""Gradients summed over calibration batches: the one loop behind every Taylor score.

Channel scores (:func:`prunekit.importance.channel.output_energy_gradients`) and
transformer head / neuron scores (:func:`prunekit.hf.importance.loss_gradients`) differ in
the loss they differentiate and the parameters they need; both run this loop. Gradients
are taken with :func:`torch.autograd.grad` (the parameters' ``.grad`` are never touched)
and summed in float64 on each parameter's own device, so a bf16 / fp16 model's scores do
not lose precision over many batches.

In a ``torch.distributed`` job every rank passes the same batches and runs every
``world``-th of them; the gradient sums and the batch count are then summed over the ranks
(:func:`prunekit.distributed.sum_across_ranks`), so every rank scores from the whole set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..distributed import calibration_shard, sum_across_ranks
from ..inputs import eval_mode

BatchLoss = Callable[[nn.Module, Any, int], torch.Tensor | None]  # (model, batch, index)


def summed_gradients(
    model: nn.Module,
    params: Mapping[str, nn.Parameter],
    batches: Iterable[Any],
    loss_of: BatchLoss,
    *,
    distributed: bool | None = None,
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
        distributed: None splits the batches over the ranks when a process group of two
            or more is initialized; True requires one; False runs every batch here.

    Returns:
        ``({name: float64 gradient sum on the parameter's device}, batches run)``; a
        parameter the loss never reaches is left out.

    Raises:
        SpecError: ``distributed=True`` without a process group.
    """
    shard = calibration_shard(_length(batches), distributed)
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
                if shard is not None and not shard.owns(index):
                    continue
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
    if shard is not None:
        return _sum_over_ranks(params, sums, count)
    return sums, count


def _length(batches: Iterable[Any]) -> int | None:
    try:
        return len(batches)  # type: ignore[arg-type]
    except TypeError:
        return None


def _sum_over_ranks(
    params: Mapping[str, nn.Parameter], sums: dict[str, torch.Tensor], count: int
) -> tuple[dict[str, torch.Tensor], int]:
    """Gradient sums and batch count over every rank; a parameter no rank reached is left
    out, as in one process."""
    local: dict[str, torch.Tensor] = {"count": torch.tensor([float(count)])}
    shapes: dict[str, tuple[int, ...]] = {"count": (1,)}
    for name, param in params.items():
        shapes[f"grad/{name}"] = tuple(param.shape)
        shapes[f"seen/{name}"] = (1,)
        if name in sums:
            local[f"grad/{name}"] = sums[name]
            local[f"seen/{name}"] = torch.ones(1)
    device = next(iter(params.values())).device if params else torch.device("cpu")
    summed = sum_across_ranks(local, shapes, device)
    grads = {name: summed[f"grad/{name}"].to(param.device) for name, param in params.items()
             if float(summed[f"seen/{name}"][0]) > 0}
    return grads, int(summed["count"][0])


def _add(sums: dict[str, torch.Tensor], name: str, grad: torch.Tensor) -> None:
    if name in sums:
        sums[name] += grad.detach().double()
    else:
        sums[name] = grad.detach().double()
