"""Pruning during a variant's fine-tuning epoch instead of before it (the same budget).

The one-shot result (pruned at the target before fine-tuning) is always made, for the
"accuracy before fine-tuning" column and as the record of the plan. Then:

- ``fade`` (the compare default): a purely structured variant trains the dense model while
  the channels its plan removes fade out (:class:`~prunekit.recover.ChannelFade`); the
  trained kept slices then go into the cut model (:func:`~prunekit.recover.transplant`),
  which computes the same function. Models where a cut channel has no BatchNorm fall back
  to one-shot.
- ``gradual`` (opt-in): a variant whose last stage is unstructured trains from the dense
  model (combined: from its structured stage) while its masks grow to the same target on a
  cubic schedule (:class:`~prunekit.recover.GradualPruner`). In a 1-epoch budget this lost
  to one-shot on Fashion-MNIST (see the README), so it is off by default.
- otherwise (and always for N:M) the one-shot model is fine-tuned with masks and shapes fixed.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..apply.masks import existing_mask, masked_modules
from ..errors import PlanError
from ..recover import ChannelFade, GradualPruner, GradualSchedule, faded_channels, transplant
from ..result import PruneResult
from ..specs import Structured, Unstructured
from ..targets import qualified_name
from .pipeline import prune_variant
from .variants import Variant, needs_calibration

log = logging.getLogger(__name__)
GRADUAL_END = 0.6  # fraction of the fine-tuning steps at which the target is reached
GRADUAL_EVERY = 16  # steps between two mask updates on the ramp
FADE_END = 0.5  # fraction of the fine-tuning steps after which faded channels are off


@dataclass
class TrainingStart:
    """What to fine-tune for a variant, and how to turn it into the final result.

    Attributes:
        model: the model to hand to :func:`~prunekit.recover.finetune`.
        pruner: its ``pruner=`` argument (None: one-shot, masks/shapes fixed).
        kind: ``"one-shot"``, ``"gradual"`` (masks grow) or ``"fade"`` (channels fade).
    """

    model: nn.Module
    pruner: GradualPruner | ChannelFade | None
    kind: str

    def describe(self) -> dict[str, Any]:
        """The schedule, for the results file."""
        if isinstance(self.pruner, GradualPruner):
            return {"kind": self.kind, **dataclasses.asdict(self.pruner.schedule)}
        if isinstance(self.pruner, ChannelFade):
            return {"kind": self.kind, "end_fraction": self.pruner.end_fraction,
                    "channels": sum(len(c) for c in self.pruner.channels.values())}
        return {"kind": self.kind}

    def finish(self, one_shot: PruneResult) -> PruneResult:
        """The final result: the trained model with the one-shot result's plan."""
        if isinstance(self.pruner, GradualPruner):
            return with_trained_model(one_shot, self.model)
        if isinstance(self.pruner, ChannelFade):
            self.pruner.remove(self.model)
            transplant(self.model, one_shot)
        return one_shot


def training_start(
    dense: nn.Module, variant: Variant, one_shot: PruneResult, example: torch.Tensor,
    *, gradual: bool = False, fade: bool = True, seed: int = 0,
) -> TrainingStart:
    """Choose how ``variant`` is trained (see the module docstring).

    Args:
        dense: the dense model (not modified; contiguous layout).
        variant: the variant.
        one_shot: ``prune_variant(dense, variant, ...)``.
        example: example inputs.
        gradual: grow the masks of an unstructured last stage during fine-tuning.
        fade: fade out the channels of purely structured variants during fine-tuning.
        seed: pruning seed.

    Otherwise ``one_shot.model`` is trained with its masks and shapes fixed.
    """
    if gradual and gradual_stage(variant) is not None:
        model, pruner = gradual_start(dense, variant, example, seed=seed)
        return TrainingStart(model, pruner, "gradual")
    if fade and all(isinstance(s, Structured) for s in variant.specs):
        model = copy.deepcopy(dense)
        try:
            channels = faded_channels(model, one_shot.plan)
        except PlanError as exc:
            log.info("%s: pruned one-shot (%s)", variant.name, exc.message)
        else:
            return TrainingStart(model, ChannelFade(channels, end_fraction=FADE_END), "fade")
    return TrainingStart(one_shot.model, None, "one-shot")


def gradual_stage(variant: Variant) -> Unstructured | None:
    """The variant's unstructured last stage, if it has one (None: prune one-shot).

    A calibrated stage (Wanda, SparseGPT) is pruned one-shot: it reads calibration batches,
    which the fine-tuning loop's gradual pruner does not pass.
    """
    last = variant.specs[-1]
    if not isinstance(last, Unstructured) or last.sparsity is None or needs_calibration(last):
        return None
    return last


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
        masks[qualified_name(name, param)] = mask.cpu()
    plan = dataclasses.replace(one_shot.plan, masks=masks)
    return PruneResult(model, plan, one_shot.spec, one_shot.layers_before, one_shot.params_before)
