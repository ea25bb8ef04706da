"""Data-free per-weight scores (pure: tensor in, tensor out)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import SpecError


def _l1(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return weight.abs()


def _l2(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return weight.square()


def _random(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # drawn by the (CPU) generator, so a seed gives the same scores on every device
    scores = torch.rand(weight.shape, generator=generator, dtype=torch.float32)
    return scores.to(weight.device)


def _lamp(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """LAMP (Lee et al. 2021): ``w_u^2 / sum(w_v^2 for v >= u)``, the weights of the tensor
    in ascending order of ``w^2`` (equal ones in position order), so the largest weight of
    every tensor scores 1; scores are scale-free and compare across layers."""
    squared = weight.reshape(-1).double().square()
    order = torch.argsort(squared, stable=True)
    ascending = squared[order]
    tail = ascending.flip(0).cumsum(0).flip(0)  # sum of w_v^2 for v >= u
    ranked = torch.where(tail > 0, ascending / tail.clamp_min(1e-300), torch.zeros_like(tail))
    scores = torch.empty_like(ranked)
    scores[order] = ranked
    return scores.float().reshape(weight.shape)


WEIGHT_SCORERS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "l1": _l1,
    "l2": _l2,
    "random": _random,
    "lamp": _lamp,
}


def weight_scores(
    name: str, weight: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Score every element of ``weight`` (same shape and device, float32, higher = more
    important).

    Args:
        name: ``"l1"``, ``"l2"``, ``"random"`` or ``"lamp"`` (layer-adaptive: each weight's
            share of the squared weights of its tensor at least as large as it).
        weight: the weight, any dtype and device.
        generator: a CPU generator for ``"random"`` (default: seeded with 0).

    Returns:
        The scores.

    Raises:
        SpecError: ``name`` is not a data-free score.

    Example:
        >>> weight_scores("l1", torch.tensor([-2.0, 1.0])).tolist()
        [2.0, 1.0]
    """
    if name not in WEIGHT_SCORERS:
        raise SpecError(
            f"importance {name!r} is not a data-free weight score",
            f"data-free scores: {', '.join(WEIGHT_SCORERS)}; others need calibration data",
        )
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    return WEIGHT_SCORERS[name](weight.detach().float(), gen)
