"""Unstructured selection with exact counts (pure functions).

Masks are boolean, True = kept. Scores of ``-inf`` mark weights that must go first
(already pruned), which makes iterative pruning only ever remove more.

Selection is a k-th value search, never a full sort. For large inputs a small random
sample brackets the k-th value between two bounds; one pass counts the scores below the
lower bound and collects the few between the bounds, and an ``O(n)`` introselect over
those finds the exact k-th value (the sample only decides the speed, never the result).
Every tensor is then compared against it; ties at the k-th value are broken by position.
"""

from __future__ import annotations

import math

import torch

from ..errors import SpecError

SAMPLE_SIZE = 1 << 16  # scores sampled to bracket the k-th value
EXACT_BELOW = 1 << 22  # fewer scores than this: select over all of them directly


def removal_count(numel: int, sparsity: float) -> int:
    """How many of ``numel`` weights a sparsity removes: ``round(sparsity * numel)``.

    Example:
        >>> removal_count(1000, 0.9), removal_count(10, 0.25)
        (900, 2)
    """
    return int(round(sparsity * numel))


def count_removed(mask: torch.Tensor) -> int:
    """Number of False (removed) entries of a keep-mask (``count_nonzero``: ~10x ``sum``)."""
    return mask.numel() - int(torch.count_nonzero(mask))


def kth_smallest(values: torch.Tensor, k: int, *, scratch: bool = False) -> float:
    """The ``k``-th smallest (1-based) of ``values`` by selection, not sorting.

    Args:
        values: a tensor of scores (any shape; flattened).
        k: rank, ``1 <= k <= values.numel()``.
        scratch: ``values`` may be reordered in place (saves a copy on CPU).

    Returns:
        The k-th smallest value as a Python float.

    Example:
        >>> kth_smallest(torch.tensor([5.0, 1.0, 4.0, 2.0]), 2)
        2.0
    """
    flat = values.detach().reshape(-1)
    if flat.device.type != "cpu":
        return float(flat.kthvalue(k).values)
    # numpy's introselect is ~3x faster than torch.kthvalue on CPU and works in place.
    array = flat.numpy() if scratch and flat.is_contiguous() else flat.numpy().copy()
    array.partition(k - 1)
    return float(array[k - 1])


def score_sample(values: torch.Tensor, total: int, generator: torch.Generator) -> torch.Tensor:
    """A seeded sample of ``values`` (flat), its size proportional to its share of ``total``."""
    count = max(1, math.ceil(SAMPLE_SIZE * values.numel() / total))
    index = torch.randint(values.numel(), (count,), generator=generator).to(values.device)
    return values.reshape(-1)[index]


def bracket(sample: torch.Tensor, k: int, total: int) -> tuple[float, float]:
    """Bounds that hold the k-th smallest of ``total`` scores with near certainty, from a
    sample of them."""
    sample = sample.sort().values
    n, q = sample.numel(), k / total
    margin = 6.0 * math.sqrt(q * (1.0 - q) / n) + 2.0 / n  # six standard errors
    low = float(sample[max(0, math.floor((q - margin) * n))])
    high = float(sample[min(n - 1, math.ceil((q + margin) * n))])
    return low, high


def _bracket(values: list[torch.Tensor], k: int, total: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(0)
    return bracket(torch.cat([score_sample(v, total, generator) for v in values]), k, total)


def kth_smallest_of(values: list[torch.Tensor], k: int) -> float:
    """The exact ``k``-th smallest (1-based) over several tensors, without concatenating them.

    Example:
        >>> kth_smallest_of([torch.tensor([5.0, 1.0]), torch.tensor([4.0, 2.0])], 3)
        4.0
    """
    flat = [v.detach().reshape(-1) for v in values]
    total = sum(v.numel() for v in flat)
    if total > EXACT_BELOW:
        low, high = _bracket(flat, k, total)
        below, inside = 0, []
        for v in flat:
            at_least_low = v >= low
            below += v.numel() - int(torch.count_nonzero(at_least_low))
            inside.append(v[at_least_low & (v <= high)])
        candidates = torch.cat(inside)
        if below < k <= below + candidates.numel():  # else the sample missed: select over all
            return kth_smallest(candidates, k - below, scratch=True)
    return kth_smallest(torch.cat(flat), k, scratch=True)


def _masks_below(
    scores: dict[str, torch.Tensor], kth: float, k: int
) -> dict[str, torch.Tensor]:
    """Remove every score below ``kth`` plus the first ties at ``kth`` until ``k`` are gone."""
    masks = {name: (s >= kth).contiguous() for name, s in scores.items()}  # row-major for ties
    remaining = k - sum(count_removed(mask) for mask in masks.values())
    for name, s in scores.items():
        if remaining <= 0:
            break
        ties = torch.nonzero((s == kth).reshape(-1)).squeeze(1)[:remaining]  # positions
        masks[name].view(-1)[ties] = False
        remaining -= ties.numel()
    return masks


def lowest_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask that removes exactly the ``k`` lowest scores (ties broken by position).

    Example:
        >>> lowest_k_mask(torch.tensor([3.0, 1.0, 2.0, 1.0]), 2).tolist()
        [True, False, True, False]
    """
    if k <= 0:
        return torch.ones_like(scores, dtype=torch.bool)
    if k >= scores.numel():
        return torch.zeros_like(scores, dtype=torch.bool)
    return _masks_below({"s": scores}, kth_smallest_of([scores], k), k)["s"]


def layer_masks(
    scores: dict[str, torch.Tensor], sparsity: dict[str, float]
) -> dict[str, torch.Tensor]:
    """Remove ``sparsity[name]`` of each tensor's weights, ranked within the tensor."""
    return {
        name: lowest_k_mask(s, removal_count(s.numel(), sparsity[name]))
        for name, s in scores.items()
    }


def global_masks(scores: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Remove ``sparsity`` of all weights together, ranked across every tensor.

    Exactly ``round(sparsity * total)`` weights are removed, where ``total`` is the number
    of scores over all tensors.
    """
    total = sum(s.numel() for s in scores.values())
    k = removal_count(total, sparsity)
    if k <= 0:
        return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
    if k >= total:
        return {name: torch.zeros_like(s, dtype=torch.bool) for name, s in scores.items()}
    return _masks_below(scores, kth_smallest_of(list(scores.values()), k), k)


def threshold_masks(scores: dict[str, torch.Tensor], threshold: float) -> dict[str, torch.Tensor]:
    """Remove every weight whose score is strictly below ``threshold``.

    Example (the worked example of docs/unstructured.md): with ``|w|`` scores and
    threshold 0.05, 0.03 is removed and 0.05 itself is kept.

        >>> w = torch.tensor([0.1, 0.05, 0.03, -0.5])
        >>> threshold_masks({"w": w.abs()}, 0.05)["w"].tolist()
        [True, True, False, True]
    """
    return {name: s >= threshold for name, s in scores.items()}


def check_not_reviving(
    already_removed: dict[str, int], masks: dict[str, torch.Tensor]
) -> None:
    """Masks only grow: a new plan must remove at least what is already removed."""
    short = [
        f"{name} ({count_removed(masks[name])} < {n} already removed)"
        for name, n in already_removed.items()
        if count_removed(masks[name]) < n
    ]
    if short:
        raise SpecError(
            "the requested sparsity is below what is already pruned in: " + ", ".join(short),
            "iterative pruning only removes more; ask for a higher sparsity or start "
            "from the dense model",
        )
