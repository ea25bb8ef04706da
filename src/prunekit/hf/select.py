"""Choose which heads, neurons and blocks go (pure functions on scores; no model here)."""

from __future__ import annotations

import torch

from ..errors import CouplingError, ShapeError, SpecError


def lowest(scores: torch.Tensor, count: int) -> list[int]:
    """Indices of the ``count`` lowest scores (ties broken by position), sorted."""
    if count <= 0:
        return []
    order = torch.argsort(scores.double(), stable=True)
    return sorted(int(i) for i in order[:count])


def heads_to_remove(
    scores: torch.Tensor, fraction: float, num_kv_heads: int, layer: str
) -> list[int]:
    """Query heads to remove in one layer for a head ``fraction``.

    With grouped-query attention each key/value group loses the same number of its
    lowest-scoring query heads, so every group keeps the same size.

    Raises:
        ShapeError: the count does not split evenly over the key/value groups, or the
            fraction would remove every head.
    """
    num_heads = scores.numel()
    count = int(round(fraction * num_heads))
    if count >= num_heads:
        raise ShapeError(
            f"heads={fraction} removes all {num_heads} heads of {layer}",
            "keep at least one head per layer; to drop a whole block use layers=",
        )
    if num_kv_heads == num_heads:
        return lowest(scores, count)
    if count % num_kv_heads:
        group = num_heads // num_kv_heads
        raise ShapeError(
            f"heads={fraction} removes {count} of {num_heads} query heads in {layer}, which "
            f"does not divide evenly over its {num_kv_heads} key/value groups",
            f"choose a multiple of 1/{group} (each group of {group} loses the same number), "
            "or list the heads to remove with heads={layer index: [...]}",
        )
    per_group = count // num_kv_heads
    group = num_heads // num_kv_heads
    removed = []
    for g in range(num_kv_heads):
        removed += [g * group + i for i in lowest(scores[g * group : (g + 1) * group], per_group)]
    return sorted(removed)


def check_explicit_heads(
    removed: list[int], num_heads: int, num_kv_heads: int, layer: str
) -> list[int]:
    """Validate explicitly listed query heads for one layer.

    Raises:
        SpecError: an index is out of range, or every head would go.
        CouplingError: with grouped-query attention, the groups that keep heads would keep
            different numbers of them (a group would be split unevenly).
    """
    bad = [i for i in removed if not 0 <= i < num_heads]
    if bad:
        raise SpecError(f"{layer} has heads 0..{num_heads - 1}; got {bad}")
    if len(removed) >= num_heads:
        raise SpecError(
            f"removing heads {removed} would remove every head of {layer}",
            "keep at least one head per layer; to drop a whole block use layers=",
        )
    group = num_heads // num_kv_heads
    left = [group - sum(1 for i in removed if i // group == g) for g in range(num_kv_heads)]
    if len({n for n in left if n}) > 1:
        raise CouplingError(
            f"removing heads {removed} from {layer} would split its key/value groups unevenly "
            f"(query heads left per group: {left})",
            f"each group of {group} query heads shares one key/value head: remove the same "
            "number of heads from every group, or whole groups",
        )
    return sorted(removed)


def kv_heads_removed(removed: list[int], num_heads: int, num_kv_heads: int) -> list[int]:
    """Key/value heads whose query heads are all removed (their group goes with them)."""
    if num_kv_heads == num_heads:
        return list(removed)
    group = num_heads // num_kv_heads
    gone = set(removed)
    return [g for g in range(num_kv_heads) if all(g * group + i in gone for i in range(group))]


def neurons_to_remove_count(fraction: float, width: int, round_to: int, layer: str) -> int:
    """How many MLP neurons go: the kept width is rounded to a multiple of ``round_to``.

    Raises:
        ShapeError: nothing would be kept.
    """
    keep = width - int(round(fraction * width))
    if round_to > 1:
        keep = max(round_to, int(round(keep / round_to)) * round_to)
    if keep < 1 or keep > width:
        raise ShapeError(
            f"neurons={fraction} with round_to={round_to} leaves {keep} of {width} neurons in "
            f"{layer}",
            "use a smaller fraction or round_to",
        )
    return width - keep


def layers_to_remove(scores: torch.Tensor, layers: int | tuple[int, ...]) -> list[int]:
    """Blocks to remove: the ``layers`` lowest-scoring, or the listed indices.

    Raises:
        SpecError: an index is out of range or every block would go.
    """
    total = scores.numel()
    chosen = lowest(scores, layers) if isinstance(layers, int) else sorted(layers)
    bad = [i for i in chosen if not 0 <= i < total]
    if bad:
        raise SpecError(f"the model has blocks 0..{total - 1}; got layers {bad}")
    if len(chosen) >= total:
        raise SpecError(f"layers={layers} would remove all {total} blocks", "keep at least one")
    return chosen
