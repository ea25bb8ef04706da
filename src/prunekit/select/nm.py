"""N:M selection: keep ``n_keep`` of every ``m`` consecutive weights along the input dim."""

from __future__ import annotations

import torch

from ..errors import ShapeError


def nm_mask(scores: torch.Tensor, n_keep: int, m: int, input_dim: int = 1) -> torch.Tensor:
    """Keep-mask with at most ``n_keep`` kept in every group of ``m`` along ``input_dim``.

    Groups are runs of ``m`` consecutive input channels for each output and kernel position.

    Example:
        >>> nm_mask(torch.tensor([[4.0, 1.0, 3.0, 2.0]]), 2, 4).tolist()
        [[True, False, True, False]]
    """
    width = scores.shape[input_dim]
    if width % m != 0:
        raise ShapeError(
            f"input dimension {width} is not divisible by m={m}",
            "ignore this layer or choose an m that divides its input width",
        )
    moved = scores.movedim(input_dim, -1)  # (..., in)
    groups = moved.reshape(-1, m)  # (n_groups, m)
    top = groups.topk(n_keep, dim=1).indices
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, top, True)
    return keep.reshape(moved.shape).movedim(-1, input_dim).contiguous()


def is_nm(mask: torch.Tensor, n_keep: int, m: int, input_dim: int = 1) -> bool:
    """True if no group of ``m`` along ``input_dim`` keeps more than ``n_keep``."""
    groups = mask.movedim(input_dim, -1).reshape(-1, m)
    return bool((groups.sum(dim=1) <= n_keep).all())
