"""What a pruning call asked for, and the refusal of arguments a method would ignore."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from ..inputs import ExampleInputs
from ..targets import IgnoreEntry, ignore_entries

OPTIONAL_ARGUMENTS = ("overrides", "include_embeddings", "calibration")


@dataclass(frozen=True)
class Request:
    """The arguments of :func:`prunekit.prune` besides the model, spec and ``inplace``."""

    example_inputs: ExampleInputs | None = None
    ignore: Iterable[IgnoreEntry] = ()  # a bare entry is normalised to a one-element tuple
    overrides: Mapping[IgnoreEntry, float] | None = None
    include_embeddings: bool = False
    calibration: Any = None
    seed: int = 0

    def __post_init__(self) -> None:
        # ignore="fc" means ["fc"], not ["f", "c"], for every pipeline alike
        object.__setattr__(self, "ignore", tuple(ignore_entries(self.ignore)))  # checked too

    def given(self) -> list[str]:
        """The optional arguments the caller set to something other than their default."""
        values = {
            "overrides": bool(self.overrides),
            "include_embeddings": bool(self.include_embeddings),
            "calibration": self.calibration is not None,
        }
        return [name for name in OPTIONAL_ARGUMENTS if values[name]]

    def refuse_unused(self, used: Iterable[str], method: str) -> None:
        """Raise :class:`SpecError` for every optional argument ``method`` would ignore.

        Args:
            used: the optional arguments (of :data:`OPTIONAL_ARGUMENTS`) the method reads.
            method: how the method is named in the message, e.g. ``"magnitude pruning"``.
        """
        unused = [name for name in self.given() if name not in set(used)]
        if unused:
            names = ", ".join(f"{name}=" for name in unused)
            raise SpecError(
                f"{method} does not use {names}; it would be ignored",
                f"drop {names} or choose a method that uses it",
            )
