"""The object every pruning call returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .plan import Plan
from .specs import Spec
from .summary import LayerInfo, Summary, summarize


@dataclass
class PruneResult:
    """A pruned model with the plan that made it.

    Attributes:
        model: the pruned module (a copy of the input unless ``inplace=True``).
        plan: the serialisable decision (``plan.to_json()``).
        spec: the spec that produced it.
    """

    model: nn.Module
    plan: Plan
    spec: Spec
    layers_before: dict[str, LayerInfo]
    params_before: int

    def summary(self) -> Summary:
        """Per-layer table (shape, nonzeros, sparsity, skipped layers and why) and totals."""
        return summarize(
            self.layers_before, self.params_before, self.model, self.plan.skipped,
            self.plan.notes,
        )
