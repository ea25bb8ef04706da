"""The object every pruning call returns."""

from __future__ import annotations

import dataclasses
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


def changes_shapes(plan: Plan | None) -> bool:
    """True if a plan changed shapes or modules (structured or depth pruning)."""
    return plan is not None and bool(plan.kept or plan.attributes or plan.removed_modules)


def after_surgery(first: PruneResult, second: PruneResult) -> PruneResult:
    """One result for masks put on a physically pruned model: the first's surgery, the
    second's masks, and a spec naming both (``kind`` stays the surgery's, so a loader
    rebuilds the smaller architecture before it loads the masked weights). The summary
    compares with the model before the surgery."""
    plan = dataclasses.replace(
        second.plan,
        spec={**first.plan.spec, "then": second.plan.spec},
        kept=first.plan.kept,
        attributes=first.plan.attributes,
        removed_modules=first.plan.removed_modules,
        skipped={**first.plan.skipped, **second.plan.skipped},
        notes={**first.plan.notes, **second.plan.notes},
    )
    # the layers the masks targeted, with their shapes before the surgery where it recorded them
    layers = {name: first.layers_before.get(name, info)
              for name, info in second.layers_before.items()}
    return PruneResult(second.model, plan, second.spec, layers, first.params_before)
