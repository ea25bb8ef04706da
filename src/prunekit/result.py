"""The object every pruning call returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import SpecError
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


def model_of(model: nn.Module | PruneResult, what: str = "model") -> nn.Module:
    """The module behind ``model``: a :class:`PruneResult`'s ``.model``, or ``model`` itself.

    Every entry point that takes a model also takes a result, through this one function.

    Raises:
        SpecError: ``model`` is neither an ``nn.Module`` nor a :class:`PruneResult`.
    """
    module = model.model if isinstance(model, PruneResult) else model
    if not isinstance(module, nn.Module):
        raise SpecError(
            f"{what} must be a torch.nn.Module or a prunekit PruneResult, "
            f"got {type(module).__name__}"
        )
    return module
