"""The spec that removes whole channels, filters, heads and neurons: :class:`Structured`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import SpecError
from .checks import as_floats, check_amount, check_choice
from .weights import SCOPES, Scope

STRUCTURED_IMPORTANCE = ("l1", "l2", "bn_scale", "taylor", "random")


@dataclass(frozen=True)
class Structured:
    """Remove whole channels / filters / heads / neurons, giving a smaller dense model.

    Args:
        sparsity: fraction of channels removed in each prunable group (``scope="layer"``)
            or ranked across groups (``scope="global"``).
        threshold: remove every channel whose importance is below it.
        importance: ``"l1"``, ``"l2"``, ``"bn_scale"``, ``"taylor"`` or ``"random"``.
        scope: ``"layer"`` or ``"global"``.
        round_to: kept widths are rounded to a multiple of this (hardware-friendly widths).
        min_channels: never keep fewer channels than this in any group.
    """

    sparsity: float | None = None
    threshold: float | None = None
    importance: str = "l1"
    scope: Scope = "layer"
    round_to: int = 1
    min_channels: int = 1

    def __post_init__(self) -> None:
        check_amount(self.sparsity, self.threshold)
        as_floats(self)
        check_choice(self.scope, SCOPES, "scope")
        check_choice(self.importance, STRUCTURED_IMPORTANCE, "importance")
        for name in ("round_to", "min_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a ``kind`` key (inverse: :func:`spec_from_dict`)."""
        return {"kind": "structured", **asdict(self)}


