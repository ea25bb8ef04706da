"""``allocation="global"`` from disk: each layer's share of a global magnitude ranking, with
the weights read one at a time (twice) instead of held together.

The in-memory ranking (:func:`prunekit.oneshot.allocation.magnitude_sparsities`) removes the
``k`` smallest ``|w|`` over every targeted weight, ties broken by layer order and position.
Here a first read samples every weight to bracket the ``k``-th smallest score; a second
read counts, per layer, the scores below the bracket and keeps those inside it (a few per
million). The exact ``k``-th score is selected among those, and each layer's count follows:
the same per-layer sparsities, in memory of one weight plus the bracketed scores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import torch

from ..oneshot.allocation import check_global_target, magnitude_score
from ..select.unstructured import bracket, kth_smallest, removal_count, score_sample

logger = logging.getLogger(__name__)
Load = Callable[[str], torch.Tensor]


def _samples(keys: list[str], load: Load, total: int) -> Iterator[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    for key in keys:
        yield score_sample(magnitude_score(key, load(key)).reshape(-1), total, generator)


def _inside(keys: list[str], load: Load, low: float, high: float
            ) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    below, inside = {}, {}
    for key in keys:
        score = magnitude_score(key, load(key)).reshape(-1)
        below[key] = int(torch.count_nonzero(score < low))
        inside[key] = score[(score >= low) & (score <= high)].clone()
    return below, inside


def streamed_magnitude_sparsities(keys: list[str], sizes: dict[str, int], load: Load,
                                  target: float) -> dict[str, float]:
    """Per-layer sparsities of a global magnitude ranking, reading each weight twice.

    Args:
        keys: the targeted weights, in the model's order (it breaks ties).
        sizes: ``{key: number of weights}`` (known without reading them).
        load: reads one weight, in the compute dtype.
        target: overall fraction to remove, in ``[0, 1)``.

    Returns:
        ``{key: sparsity}``, equal to ``magnitude_sparsities`` on the same weights.

    Raises:
        SpecError: a bad ``target``, or an empty or non-finite weight.
    """
    check_global_target(target, len(keys))
    total = sum(sizes[k] for k in keys)
    k = removal_count(total, target)
    if k <= 0 or k >= total:
        return {key: 0.0 if k <= 0 else 1.0 for key in keys}
    low, high = bracket(torch.cat(list(_samples(keys, load, total))), k, total)
    below, inside = _inside(keys, load, low, high)
    under = sum(below.values())
    if not under < k <= under + sum(v.numel() for v in inside.values()):
        logger.warning("the sample missed the global threshold; ranking every score at once")
        below, inside = _inside(keys, load, float("-inf"), float("inf"))
        under = 0
    kth = kth_smallest(torch.cat(list(inside.values())), k - under)
    removed = {key: below[key] + int(torch.count_nonzero(inside[key] < kth)) for key in keys}
    remaining = k - sum(removed.values())
    for key in keys:  # ties at the k-th score go in layer order, as in memory
        take = min(remaining, int(torch.count_nonzero(inside[key] == kth)))
        removed[key] += take
        remaining -= take
    return {key: removed[key] / sizes[key] for key in keys}

