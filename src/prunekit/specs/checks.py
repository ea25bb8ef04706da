"""Validation shared by every spec: amounts, choices, numbers stored as plain floats."""

from __future__ import annotations

import math
import numbers

from ..errors import SpecError


def check_sparsity(sparsity: float, what: str = "sparsity") -> None:
    """Raise SpecError unless ``0 <= sparsity < 1``."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise SpecError(f"{what} must be a number, got {sparsity!r}", "use a float such as 0.5")
    if not (math.isfinite(sparsity) and 0.0 <= sparsity < 1.0):
        raise SpecError(
            f"{what} must be in [0, 1), got {sparsity!r}",
            "sparsity is the fraction removed: 0.9 removes 90% and keeps 10%",
        )


def check_amount(sparsity: float | None, threshold: float | None) -> None:
    if (sparsity is None) == (threshold is None):
        raise SpecError(
            "give exactly one of sparsity= or threshold=",
            "sparsity=0.9 removes a fraction; threshold=0.05 removes everything scored below 0.05",
        )
    if sparsity is not None:
        check_sparsity(sparsity)
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not math.isfinite(threshold)
        or threshold < 0
    ):
        raise SpecError(f"threshold must be a finite number >= 0, got {threshold!r}")


def as_floats(spec: object) -> None:
    """Store numpy / int amounts as plain floats (JSON-friendly, equal-comparable)."""
    for name in ("sparsity", "threshold"):
        value = getattr(spec, name)
        if value is not None:
            object.__setattr__(spec, name, float(value))


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise SpecError(f"unknown {what} {value!r}", f"choose one of: {', '.join(choices)}")


