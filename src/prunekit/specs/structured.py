"""The spec that removes whole channels, filters, heads and neurons: :class:`Structured`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..budget.targets import BudgetTarget, target_from_dict
from ..errors import SpecError
from .checks import as_floats, check_amount, check_choice
from .weights import SCOPES, Scope

STRUCTURED_IMPORTANCE = ("l1", "l2", "bn_scale", "taylor", "random")
AMOUNT_HINT = ("sparsity=0.5 removes half of each group's channels; threshold=0.05 removes "
               "everything scored below it; target=pk.MACs(0.25) keeps a quarter of the MACs")


@dataclass(frozen=True)
class Structured:
    """Remove whole channels / filters / heads / neurons, giving a smaller dense model.

    Give exactly one of ``sparsity``, ``threshold`` or ``target``.

    Args:
        sparsity: fraction of channels removed in each prunable group (``scope="layer"``)
            or ranked across groups (``scope="global"``).
        threshold: remove every channel whose importance is below it.
        target: a budget, the fraction of the dense model that remains:
            ``pk.Params(0.3)``, ``pk.MACs(0.25)`` or ``pk.Latency(0.5, batch=64)``. Each
            group keeps as many channels as the budget allows, chosen across groups by
            importance per unit of cost (``scope`` is not used).
        importance: ``"l1"``, ``"l2"``, ``"bn_scale"``, ``"taylor"`` or ``"random"``.
        scope: ``"layer"`` or ``"global"``.
        round_to: kept widths are rounded to a multiple of this (hardware-friendly widths).
        min_channels: never keep fewer channels than this in any group.

    Raises:
        SpecError: none or several of sparsity / threshold / target, or a bad value.
    """

    sparsity: float | None = None
    threshold: float | None = None
    importance: str = "l1"
    scope: Scope = "layer"
    round_to: int = 1
    min_channels: int = 1
    target: BudgetTarget | None = None

    def __post_init__(self) -> None:
        if self.target is not None:
            object.__setattr__(self, "target", target_from_dict(self.target))
            given = [n for n in ("sparsity", "threshold") if getattr(self, n) is not None]
            if given:
                raise SpecError(f"give exactly one of sparsity=, threshold= or target= "
                                f"(got target= and {given[0]}=)", AMOUNT_HINT)
        elif self.sparsity is None and self.threshold is None:
            raise SpecError("give exactly one of sparsity=, threshold= or target=", AMOUNT_HINT)
        else:
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
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "target"}
        if self.target is not None:  # absent otherwise: ratio specs keep their old JSON
            data["target"] = self.target.to_dict()
        return {"kind": "structured", **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Structured:
        """Inverse of :meth:`to_dict` (a ``target`` dict becomes its target object).

        Raises:
            SpecError: unknown fields, an unknown target kind or bad values.
        """
        values = {k: v for k, v in data.items() if k != "kind"}
        if values.get("target") is not None:
            values["target"] = target_from_dict(values["target"])
        return cls(**values)
