"""Which channels to remove: pure functions from group scores to a removal mask.

Counts are exact: layer scope removes ``floor(sparsity * size)`` channels of each group
(fewer only where ``round_to`` / ``min_channels`` / frozen channels require it); global
scope ranks every prunable channel by its score relative to its group's mean and removes
``floor(sparsity * total)`` of them, then applies the same per-group limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GroupChoice:
    """What selection needs to know about one group."""

    channels: torch.Tensor  # dense channel ids
    frozen: torch.Tensor  # bool per channel
    unit: int = 1  # indices per channel (a head spans head_dim indices)
    sparsity: float | None = None  # per-group override (layer scope)
    weight: float = 1.0  # what a channel weighs against other groups' (budget allocation)


def _step(round_to: int, unit: int) -> int:
    """Channel-count multiple that makes ``count * unit`` a multiple of ``round_to``."""
    return round_to // math.gcd(round_to, unit)


def _kept_count(size: int, n_frozen: int, wanted_remove: int, round_to: int, unit: int,
                min_channels: int) -> int:
    keep = max(size - wanted_remove, min_channels, n_frozen, 1)
    step = _step(round_to, unit)
    keep = math.ceil(keep / step) * step
    return min(keep, size)


def kept_widths(group: GroupChoice, round_to: int = 1, min_channels: int = 1) -> list[int]:
    """Every width ``group`` may keep, widest first: its full size, then each multiple of
    the ``round_to`` step down to the least that ``min_channels`` and its frozen channels
    allow (the widths ratio pruning can produce).

    Example:
        >>> g = GroupChoice(torch.arange(20), torch.zeros(20, dtype=torch.bool))
        >>> kept_widths(g, round_to=8, min_channels=4)
        [20, 16, 8]
    """
    size = group.channels.numel()
    step = _step(round_to, group.unit)
    least = _kept_count(size, int(group.frozen.sum()), size, round_to, group.unit, min_channels)
    widths = [size] + list(range(size // step * step, least - 1, -step))
    return sorted({w for w in widths if least <= w <= size}, reverse=True)


def removal_order(group: GroupChoice, scores: torch.Tensor) -> torch.Tensor:
    """The group's non-frozen channel ids, lowest score first (the order they go in)."""
    candidates = group.channels[~group.frozen]
    return candidates[torch.argsort(scores[candidates], stable=True)]


def _remove_lowest(group: GroupChoice, scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Dense ids of the ``size - keep`` lowest-scored non-frozen channels."""
    n_remove = group.channels.numel() - keep
    if n_remove <= 0:
        return group.channels[:0]
    candidates = group.channels[~group.frozen]
    order = torch.argsort(scores[candidates], stable=True)
    return candidates[order[:n_remove]]


def select_layer(groups: list[GroupChoice], scores: torch.Tensor, sparsity: float,
                 round_to: int = 1, min_channels: int = 1) -> torch.Tensor:
    """Remove ``floor(sparsity * size)`` lowest channels of every group.

    Args:
        groups: the groups (channels, frozen flags, unit, optional sparsity override).
        scores: ``(num_channels,)`` importance, higher = keep.
        sparsity: fraction of each group's channels to remove.
        round_to: kept widths are multiples of this (rounded up: fewer removed).
        min_channels: never keep fewer channels than this in a group.

    Returns:
        ``(num_channels,)`` bool, True = removed.
    """
    removed = torch.zeros(scores.numel(), dtype=torch.bool)
    for group in groups:
        keep = layer_width(group, sparsity, round_to, min_channels)
        removed[_remove_lowest(group, scores, keep)] = True
    return removed


def layer_width(group: GroupChoice, sparsity: float, round_to: int = 1,
                min_channels: int = 1) -> int:
    """Channels layer-scope pruning keeps in ``group`` (its own override wins)."""
    size = group.channels.numel()
    share = sparsity if group.sparsity is None else group.sparsity
    wanted = math.floor(share * size + 1e-9)
    return _kept_count(size, int(group.frozen.sum()), wanted, round_to, group.unit, min_channels)


def select_threshold(groups: list[GroupChoice], scores: torch.Tensor, threshold: float,
                     round_to: int = 1, min_channels: int = 1) -> torch.Tensor:
    """Remove every non-frozen channel scored below ``threshold`` (group limits apply)."""
    removed = torch.zeros(scores.numel(), dtype=torch.bool)
    for group in groups:
        below = (scores[group.channels] < threshold) & ~group.frozen
        keep = _kept_count(group.channels.numel(), int(group.frozen.sum()), int(below.sum()),
                           round_to, group.unit, min_channels)
        removed[_remove_lowest(group, scores, keep)] = True
    return removed


def select_global(groups: list[GroupChoice], scores: torch.Tensor, sparsity: float,
                  round_to: int = 1, min_channels: int = 1) -> torch.Tensor:
    """Rank all channels by score / group mean; remove ``floor(sparsity * total)``."""
    relative = torch.full_like(scores, math.inf)
    total = 0
    for group in groups:
        total += group.channels.numel()
        free = group.channels[~group.frozen]
        if free.numel():
            mean = scores[free].mean()
            relative[free] = scores[free] / mean if mean > 0 else scores[free]
    n_remove = math.floor(sparsity * total + 1e-9)
    order = torch.argsort(relative, stable=True)[:n_remove]
    chosen = torch.zeros(scores.numel(), dtype=torch.bool)
    chosen[order[torch.isfinite(relative[order])]] = True
    removed = torch.zeros(scores.numel(), dtype=torch.bool)
    for group in groups:
        wanted = int(chosen[group.channels].sum())
        keep = _kept_count(group.channels.numel(), int(group.frozen.sum()), wanted, round_to,
                           group.unit, min_channels)
        removed[_remove_lowest(group, relative, keep)] = True
    return removed


def select_channels(groups: list[GroupChoice], scores: torch.Tensor, *,
                    sparsity: float | None, threshold: float | None, scope: str,
                    round_to: int, min_channels: int) -> torch.Tensor:
    """Dispatch on the spec's fields; see the functions above."""
    if threshold is not None:
        return select_threshold(groups, scores, threshold, round_to, min_channels)
    assert sparsity is not None
    if scope == "global":
        return select_global(groups, scores, sparsity, round_to, min_channels)
    return select_layer(groups, scores, sparsity, round_to, min_channels)


def kept_heads(head_channels: torch.Tensor, removed: torch.Tensor) -> int:
    """Number of heads left: heads whose channel is not removed."""
    valid = head_channels[head_channels >= 0]
    return int((~removed[valid]).sum()) + int((head_channels < 0).sum())


__all__ = ["GroupChoice", "kept_heads", "kept_widths", "layer_width", "removal_order",
           "select_channels",
           "select_global", "select_layer", "select_threshold"]
