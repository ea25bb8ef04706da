"""Sums across ranks: the one collective behind every split calibration statistic.

Statistics are summed, never averaged: a Gram matrix, a sum of squares or a gradient sum
of the whole calibration set is the sum of the ranks' partial sums, and token counts are
summed beside them, so every mean is taken once, over every token. All tensors of one call
travel as a single float64 buffer; a name a rank never filled counts as zeros there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn

from .group import initialized


def _comm_device(device: torch.device) -> torch.device:
    """Where the buffer must be for the group's backend (NCCL reduces CUDA tensors only)."""
    if dist.get_backend() == "nccl" and device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def sum_across_ranks(
    local: Mapping[str, torch.Tensor],
    shapes: Mapping[str, Sequence[int]],
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Element-wise sums over every rank of named tensors, in float64.

    Every rank must call it with the same ``shapes`` (names and shapes); ``local`` may lack
    names (zeros are sent for them). Without a process group the local tensors come back
    (as float64).

    Args:
        local: ``{name: this rank's partial sum}``.
        shapes: ``{name: shape}`` of every summed tensor, the same on every rank.
        device: where the sums are returned (and, but for NCCL, reduced).

    Returns:
        ``{name: sum over ranks}`` for every name of ``shapes``, float64 on ``device``.
    """
    device = torch.device(device)
    names = sorted(shapes)
    sizes = [int(torch.Size(shapes[n]).numel()) for n in names]
    comm = _comm_device(device) if initialized() else device
    flat = torch.zeros(sum(sizes), dtype=torch.float64, device=comm)
    offset = 0
    for name, size in zip(names, sizes, strict=True):
        if name in local:
            flat[offset:offset + size] = local[name].detach().reshape(-1).to(comm, torch.float64)
        offset += size
    if initialized():
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat.to(device)
    parts = flat.split(sizes) if sizes else []
    return {name: part.reshape(tuple(shapes[name]))
            for name, part in zip(names, parts, strict=True)}


def mean_across_ranks(value: float) -> float:
    """The mean of ``value`` over every rank (``value`` itself without a process group)."""
    if not initialized():
        return value
    summed = sum_across_ranks({"v": torch.tensor([value])}, {"v": (1,)})["v"]
    return float(summed[0]) / dist.get_world_size()


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics, masks) into every rank's
    ``module``, as ``DistributedDataParallel`` does before each forward (nothing to do
    without a process group). Every rank must call it.

    Args:
        module: the module (not its wrapper), the same architecture on every rank.
        src: the rank whose buffers are kept.
    """
    if not initialized():
        return
    for buffer in module.buffers():
        comm = _comm_device(buffer.device)
        if comm == buffer.device:
            dist.broadcast(buffer.detach(), src=src)  # in place: shares the buffer's storage
            continue
        value = buffer.detach().to(comm)
        dist.broadcast(value, src=src)
        with torch.no_grad():
            buffer.copy_(value)
