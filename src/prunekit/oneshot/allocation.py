"""Per-layer sparsity allocation for one-shot pruning (pure functions).

``"owl"``: outlier-weighted layer-wise sparsity (Yin et al., "Outlier Weighed Layerwise
Sparsity (OWL)", 2024). Each block's outlier ratio is the fraction of its Wanda scores
``|W| * ||x||`` above ``m`` times the block's mean score; ratios are mapped linearly onto
``[-lam, +lam]`` around the target, blocks with more outliers getting less sparsity. The
shift is weighted by each block's weight count, so the overall fraction removed from the
targeted weights stays the requested one.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import SpecError

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
