"""Per-layer sparsity allocation for one-shot pruning (pure functions).

``"owl"``: outlier-weighted layer-wise sparsity (Yin et al., "Outlier Weighed Layerwise
Sparsity (OWL)", 2024). Each block's outlier ratio is the fraction of its Wanda scores
``|W| * ||x||`` above ``m`` times the block's mean score; ratios are mapped linearly onto
``[-lam, +lam]`` around the target, blocks with more outliers getting less sparsity. The
shift is weighted by each block's weight count, so the overall fraction removed from the
targeted weights stays the requested one.

``"global"``: each layer gets the share a global magnitude (``|w|``) ranking over every
targeted weight would remove from it (what ``Unstructured(scope="global", importance="l1")``
removes per layer); the calibrated method then chooses *which* weights go within the layer.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import SpecError
from ..select.unstructured import count_removed, global_masks

OWL_M = 5.0
OWL_LAMBDA = 0.08


def outlier_ratio(scores: list[torch.Tensor], m: float = OWL_M) -> float:
    """Fraction of all ``scores`` above ``m`` times their mean.

    Args:
        scores: the Wanda scores of every weight of one block (any shapes).
        m: outlier threshold, as a multiple of the mean score.

    Returns:
        The outlier ratio in ``[0, 1]``.
    """
    flat = torch.cat([s.flatten().double() for s in scores])
    return float((flat > m * flat.mean()).double().mean())


def owl_sparsities(
    ratios: Mapping[str, float], sizes: Mapping[str, int], target: float,
    lam: float = OWL_LAMBDA,
) -> dict[str, float]:
    """Per-group sparsities from outlier ratios, weighted to remove ``target`` overall.

    Args:
        ratios: ``{group: outlier ratio}``.
        sizes: ``{group: number of targeted weights}``.
        target: overall fraction to remove.
        lam: half-width of the spread of sparsities around ``target``.

    Returns:
        ``{group: sparsity}`` with ``sum(size * sparsity) == target * sum(size)``.

    Raises:
        SpecError: a group's sparsity would leave ``[0, 1)``.
    """
    names = list(ratios)
    values = torch.tensor([ratios[n] for n in names], dtype=torch.float64)
    weights = torch.tensor([float(sizes[n]) for n in names], dtype=torch.float64)
    spread = values.max() - values.min()
    if len(names) < 2 or float(spread) == 0.0:
        return {n: target for n in names}
    delta = (values - values.min()) / spread * (2 * lam)  # (groups,) more outliers, more kept
    delta = delta - (delta * weights).sum() / weights.sum()
    result = {n: target - float(d) for n, d in zip(names, delta, strict=True)}
    bad = {n: s for n, s in result.items() if not 0.0 <= s < 1.0}
    if bad:
        raise SpecError(
            f"outlier-weighted allocation leaves [0, 1) for {sorted(bad)}",
            "use a sparsity further from 0 and 1, or allocation='uniform'",
        )
    return result


def check_global_target(target: float, layers: int) -> None:
    """Raise unless ``target`` is in ``[0, 1)`` and there is a layer to rank.

    Raises:
        SpecError: naming the problem.
    """
    if not 0.0 <= target < 1.0:
        raise SpecError(f"global allocation needs a sparsity in [0, 1), got {target!r}")
    if not layers:
        raise SpecError("global allocation needs at least one layer")


def magnitude_score(key: str, weight: torch.Tensor) -> torch.Tensor:
    """``|w|`` in float32, the global ranking's score of one layer.

    Raises:
        SpecError: the weight is empty or not finite.
    """
    if weight.numel() == 0:
        raise SpecError(f"global allocation: {key} has no weights")
    score = weight.detach().abs().float()
    if not bool(torch.isfinite(score).all()):
        raise SpecError(f"global allocation: {key} has non-finite weights",
                        "fix or skip the layer (ignore=) before pruning")
    return score


def magnitude_sparsities(weights: Mapping[str, torch.Tensor], target: float) -> dict[str, float]:
    """Per-layer sparsities of a global magnitude ranking.

    The ``round(target * total)`` weights of smallest ``|w|`` over all of ``weights`` are
    counted per layer (ties broken by position, as global L1 pruning breaks them); each
    layer's sparsity is its count over its size. The per-layer counts sum to the global one,
    so a method that removes ``round(sparsity * size)`` weights of each layer removes
    ``target`` overall.

    Args:
        weights: ``{layer key: weight}`` (any shapes; the effective, masked weights).
        target: overall fraction to remove, in ``[0, 1)``.

    Returns:
        ``{layer key: sparsity}`` in ``[0, 1]``.

    Raises:
        SpecError: ``target`` is outside ``[0, 1)``, a weight is empty or not finite, or
            ``weights`` is empty.

    Example:
        >>> magnitude_sparsities({"a": torch.tensor([0.1, -0.2, 0.25, 4.0]),
        ...                       "b": torch.tensor([3.0, 5.0])}, 0.5)
        {'a': 0.75, 'b': 0.0}
    """
    check_global_target(target, len(weights))
    scores = {key: magnitude_score(key, weight) for key, weight in weights.items()}
    masks = global_masks(scores, target)
    return {key: count_removed(mask) / mask.numel() for key, mask in masks.items()}
