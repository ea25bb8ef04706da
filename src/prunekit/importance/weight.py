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


WEIGHT_SCORERS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "l1": _l1,
    "l2": _l2,
    "random": _random,
}


def weight_scores(
    name: str, weight: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Score every element of ``weight`` (same shape and device, float32, higher = more
    important).

    Args:
        name: ``"l1"``, ``"l2"`` or ``"random"``.
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
