"""Views of a weight grouped by unit (head or neuron): ``(units, everything else)``."""

from __future__ import annotations

import torch
from torch import nn

from .arch import Slice


def weight_of(model: nn.Module, slc: Slice) -> nn.Parameter:
    """The Parameter a slice refers to."""
    return module_weight(model, slc.module)


def module_weight(model: nn.Module, path: str) -> nn.Parameter:
    """``model.get_submodule(path).weight``, checked to be a Parameter."""
    weight = model.get_submodule(path).weight
    assert isinstance(weight, nn.Parameter), f"{path}.weight is not a Parameter"
    return weight


def unit_view(weight: torch.Tensor, slc: Slice, n_units: int, unit_size: int) -> torch.Tensor:
    """The part of ``weight`` a slice covers, as (n_units, unit_size, rest).

    Linear weights are (out, in); Conv1D weights (``slc.transposed``) are (in, out).
    """
    span = slice(slc.offset, slc.offset + n_units * unit_size)
    out_dim = 1 if slc.transposed else 0
    dim = out_dim if slc.side == "out" else 1 - out_dim
    part = weight[:, span] if dim == 1 else weight[span]
    moved = part.movedim(dim, 0)  # (n_units * unit_size, rest)
    return moved.reshape(n_units, unit_size, -1)


def unit_indices(slc: Slice, units: list[int], unit_size: int, width: int) -> list[int]:
    """Indices along the sliced dimension that ``units`` occupy, inside a dim of ``width``."""
    taken = {slc.offset + u * unit_size + i for u in units for i in range(unit_size)}
    return [i for i in range(width) if i in taken]


def sliced_dim(slc: Slice) -> int:
    """The weight dimension a slice cuts."""
    out_dim = 1 if slc.transposed else 0
    return out_dim if slc.side == "out" else 1 - out_dim
