"""Budget targets: the fraction of the dense model's params, MACs or latency that remains.

``Structured(target=Params(0.3))`` keeps 30% of the parameters, ``MACs(0.25)`` a quarter of
the multiply-accumulates, ``Latency(0.5, batch=64)`` half the measured time of a forward
pass at batch 64 on the given device. Each is a frozen dataclass validated on construction
and written to JSON by :meth:`to_dict` (inverse: :func:`target_from_dict`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SpecError

TARGET_HINT = "a target is the fraction that remains: MACs(0.25) keeps a quarter of the MACs"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}


def check_fraction(value: object, kind: str) -> float:
    """``value`` as a float in (0, 1].

    Raises:
        SpecError: not a real number, or outside (0, 1].
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SpecError(f"{kind} target must be a number, got {value!r}", TARGET_HINT)
    number = float(value)
    if not (math.isfinite(number) and 0.0 < number <= 1.0):
        raise SpecError(f"{kind} target must be in (0, 1], got {value!r}", TARGET_HINT)
    return number


def _positive_int(value: object, what: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"Latency {what} must be a positive integer, got {value!r}")


def _dtype(value: object) -> torch.dtype:
    if isinstance(value, str):
        value = DTYPES.get(value.removeprefix("torch."), value)
    if not isinstance(value, torch.dtype) or value not in DTYPES.values():
        raise SpecError(f"Latency dtype must be a floating torch dtype, got {value!r}",
                        f"choose one of: {', '.join(DTYPES)}")
    return value


def _device(value: object) -> str:
    try:
        if not isinstance(value, (str, torch.device)):
            raise TypeError(type(value).__name__)
        return str(torch.device(value))
    except (RuntimeError, TypeError) as exc:
        raise SpecError(f"Latency device {value!r} is not a torch device",
                        'use "cpu" or "cuda" (or "cuda:1")') from exc


@dataclass(frozen=True)
class Params:
    """Keep this fraction of the dense model's parameters (``count_params``).

    Args:
        fraction: in (0, 1]; ``Params(0.3)`` keeps 30% of the parameters.
    """

    fraction: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", check_fraction(self.fraction, "Params"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a ``kind`` key (inverse: :func:`target_from_dict`)."""
        return {"kind": "params", "fraction": self.fraction}


@dataclass(frozen=True)
class MACs:
    """Keep this fraction of the dense model's multiply-accumulates (``count_macs`` on the
    example inputs).

    Args:
        fraction: in (0, 1]; ``MACs(0.25)`` keeps a quarter of the MACs.
    """

    fraction: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", check_fraction(self.fraction, "MACs"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a ``kind`` key (inverse: :func:`target_from_dict`)."""
        return {"kind": "macs", "fraction": self.fraction}


@dataclass(frozen=True)
class Latency:
    """Keep this fraction of the dense model's measured forward latency.

    Each prunable layer is timed on ``device`` at ``batch`` / ``dtype`` / ``threads`` at a few
    widths (a table cached on disk); the result is measured against the dense model,
    interleaved, median of ``rounds`` rounds.

    Args:
        fraction: in (0, 1]; ``Latency(0.5, batch=64)`` asks for half the latency.
        batch: batch size timed (the example inputs are repeated along their first dim).
        device: ``"cpu"`` or a CUDA device.
        dtype: ``torch.float32`` / ``float16`` / ``bfloat16`` / ``float64`` (or its name).
        threads: torch intra-op threads while timing (None: the current setting).
        rounds: interleaved rounds of the dense-vs-pruned measurement.
    """

    fraction: float
    batch: int = 1
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    threads: int | None = None
    rounds: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", check_fraction(self.fraction, "Latency"))
        _positive_int(self.batch, "batch")
        _positive_int(self.threads, "threads", allow_none=True)
        _positive_int(self.rounds, "rounds")
        object.__setattr__(self, "device", _device(self.device))
        object.__setattr__(self, "dtype", _dtype(self.dtype))

    @property
    def dtype_name(self) -> str:
        """``"float32"``-style name of :attr:`dtype`."""
        return str(self.dtype).removeprefix("torch.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a ``kind`` key (inverse: :func:`target_from_dict`)."""
        return {"kind": "latency", "fraction": self.fraction, "batch": self.batch,
                "device": self.device, "dtype": self.dtype_name, "threads": self.threads,
                "rounds": self.rounds}


BudgetTarget = Params | MACs | Latency
TARGET_KINDS: dict[str, type[Params] | type[MACs] | type[Latency]] = {
    "params": Params, "macs": MACs, "latency": Latency,
}


def target_from_dict(data: Mapping[str, Any] | BudgetTarget) -> BudgetTarget:
    """Rebuild a target from :meth:`to_dict` output (a target passes through).

    Raises:
        SpecError: not a mapping, an unknown ``kind`` or bad fields.
    """
    if isinstance(data, (Params, MACs, Latency)):
        return data
    if not isinstance(data, Mapping):
        raise SpecError(
            f"target must be pk.Params, pk.MACs or pk.Latency, got {type(data).__name__}",
            "e.g. target=pk.MACs(0.25)",
        )
    fields = dict(data)
    kind = fields.pop("kind", None)
    if kind not in TARGET_KINDS:
        raise SpecError(f"unknown target kind {kind!r}", f"expected one of {sorted(TARGET_KINDS)}")
    try:
        return TARGET_KINDS[kind](**fields)
    except TypeError as exc:
        raise SpecError(f"bad fields for a {kind} target: {exc}") from exc
