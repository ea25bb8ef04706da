"""Gradual pruning of a variant's unstructured stage during its fine-tuning epoch.

The one-shot result (pruned at the target before fine-tuning) is still made, for the
"accuracy before fine-tuning" column; training then starts from the dense model (or, for
combined variants, from its structured stage) and the masks grow to the same target on a
cubic schedule inside the same fine-tuning budget.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ..apply.masks import existing_mask, masked_modules
from ..recover import GradualPruner, GradualSchedule
from ..result import PruneResult
from ..specs import Unstructured
from .pipeline import prune_variant
from .variants import Variant

GRADUAL_END = 0.6  # fraction of the fine-tuning steps at which the target is reached
GRADUAL_EVERY = 16  # steps between two mask updates on the ramp


def gradual_stage(variant: Variant) -> Unstructured | None:
    """The variant's unstructured last stage, if it has one (None: prune one-shot)."""
    last = variant.specs[-1]
    return last if isinstance(last, Unstructured) and last.sparsity is not None else None


def gradual_start(
    dense: nn.Module, variant: Variant, example: torch.Tensor, seed: int = 0
) -> tuple[nn.Module, GradualPruner]:
    """The model to fine-tune (dense, or after the structured stages) and its pruner.

    Args:
        dense: the dense model (not modified; contiguous layout).
        variant: a variant whose last spec is unstructured with a sparsity.
        example: example inputs for structured stages.
        seed: pruning seed.

    Returns:
        ``(model, pruner)``: hand both to :func:`prunekit.recover.finetune`.
    """
    stage = gradual_stage(variant)
    if stage is None:
        raise ValueError(f"{variant.name} has no unstructured stage to prune gradually")
    first = dataclasses.replace(variant, specs=variant.specs[:-1])
    if first.specs:
        model = prune_variant(dense, first, example, seed=seed).model
    else:
        model = copy.deepcopy(dense)
    assert stage.sparsity is not None
    schedule = GradualSchedule(stage.sparsity, end_fraction=GRADUAL_END, every=GRADUAL_EVERY)
    pruner = GradualPruner(schedule, lambda s: dataclasses.replace(stage, sparsity=s))
    return model, pruner


def with_trained_model(one_shot: PruneResult, model: nn.Module) -> PruneResult:
    """``one_shot``'s result record, holding the trained model and its final masks."""
    masks = {}
    for name, module, param in masked_modules(model):
        mask = existing_mask(module, param)
        assert mask is not None, "masked_modules lists masked parameters only"
        masks[f"{name}.{param}" if name else param] = mask.cpu()
    plan = dataclasses.replace(one_shot.plan, masks=masks)
    return PruneResult(model, plan, one_shot.spec, one_shot.layers_before, one_shot.params_before)
