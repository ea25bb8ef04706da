"""What a budget asked for and what the pruned model achieved, on the result and the plan."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..plan import Plan
from ..result import PruneResult


@dataclass(frozen=True)
class LatencyFigures:
    """Dense and pruned latency measured interleaved in one process (median of rounds)."""

    dense_ms: float
    pruned_ms: float
    rounds: int
    batch: int
    device: str
    dtype: str
    threads: int
    table_layers: int  # layer calls the table covers
    table_widths: int  # (layer, width) points it needed
    table_timed: int  # of them, timed in this call (the rest came from the cache)
    table_seconds: float

    @property
    def ratio(self) -> float:
        """Pruned over dense latency."""
        return self.pruned_ms / self.dense_ms if self.dense_ms > 0 else 1.0


@dataclass(frozen=True)
class BudgetReport:
    """Requested vs achieved figures of a budgeted structured pruning.

    Attributes:
        target: the target as a dict (``{"kind": "macs", "fraction": 0.25}``).
        params_before / params_after: ``count_params`` of the dense and pruned model.
        macs_before / macs_after: ``count_macs`` on the example inputs.
        estimated: the cost model's fraction for the target's kind (before measuring).
        refinements: re-cuts after a measured miss (the budget scaled by the miss).
        latency: measured latency for a latency target, else None.
    """

    target: dict[str, Any]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    estimated: float
    refinements: int = 0
    latency: LatencyFigures | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def requested(self) -> float:
        """The fraction asked for."""
        return float(self.target["fraction"])

    @property
    def params_ratio(self) -> float:
        """Pruned over dense parameters."""
        return self.params_after / self.params_before if self.params_before else 1.0

    @property
    def macs_ratio(self) -> float:
        """Pruned over dense MACs."""
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    @property
    def achieved(self) -> float:
        """The achieved fraction of the target's kind (measured latency for latency)."""
        kind = self.target["kind"]
        if kind == "params":
            return self.params_ratio
        if kind == "macs":
            return self.macs_ratio
        return self.latency.ratio if self.latency is not None else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (ratios included)."""
        data = asdict(self)
        data["notes"] = list(self.notes)
        data.update(requested=self.requested, achieved=self.achieved,
                    params_ratio=self.params_ratio, macs_ratio=self.macs_ratio)
        if self.latency is not None:
            data["latency"]["ratio"] = self.latency.ratio
        return data

    def __str__(self) -> str:
        kind = self.target["kind"]
        lines = [
            f"budget {kind} {self.requested:.3f}: achieved {self.achieved:.4f} "
            f"({self.achieved / self.requested:.3f}x of requested; estimate {self.estimated:.4f})",
            f"params {self.params_before:,} -> {self.params_after:,} ({self.params_ratio:.4f})",
            f"MACs {self.macs_before:,} -> {self.macs_after:,} ({self.macs_ratio:.4f})",
        ]
        if self.latency is not None:
            lat = self.latency
            lines.append(
                f"latency {lat.dense_ms:.2f} -> {lat.pruned_ms:.2f} ms ({lat.ratio:.4f}), batch "
                f"{lat.batch}, {lat.device} {lat.dtype}, {lat.threads} threads, median of "
                f"{lat.rounds} interleaved rounds; table: {lat.table_widths} widths of "
                f"{lat.table_layers} layer calls, {lat.table_timed} timed now, "
                f"{lat.table_seconds:.1f} s")
        if self.refinements:
            lines.append(f"re-cut {self.refinements}x after measuring a miss")
        lines.extend(self.notes)
        return "\n".join(lines)


@dataclass
class BudgetPlan(Plan):
    """A structured plan that also records its budget report (``"budget"`` in its JSON)."""

    budget: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Plan.to_dict`, plus ``budget``."""
        return {**super().to_dict(), "budget": dict(self.budget)}


@dataclass
class BudgetResult(PruneResult):
    """A :class:`~prunekit.PruneResult` whose ``budget`` says requested vs achieved."""

    budget: BudgetReport | None = None
