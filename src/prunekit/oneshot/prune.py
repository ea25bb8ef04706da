"""One-shot, calibrated pruning to the masked end state: Wanda and SparseGPT.

Validation happens first (calibration present, spec supported, layers prunable); then the
model (or its copy) is calibrated block by block and each targeted weight gets a mask
(and, for SparseGPT, reconstructed values), giving the same masked end state as any other
prunekit result: ``finalize``, saving and sparse conversion work unchanged. The walk is in
:mod:`.walk`, the pruning of each layer in :mod:`.layers`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..apply.masks import effective_weight
from ..distributed import (
    active,
    check_same_on_every_rank,
    digest_batches,
    digest_model,
    digest_tensors,
)
from ..errors import CalibrationError, PlanError, SpecError, TargetError
from ..inputs import eval_mode, run_example
from ..pipeline.request import Request
from ..pipeline.verify import check_still_runs
from ..plan import Plan
from ..result import PruneResult
from ..specs import NM, Unstructured
from ..summary import count_parameters, layer_infos
from ..targets import IgnoreEntry, Target, qualified_name, resolve_overrides, resolve_targets
from ..unstructured import check_finite, check_nm_shapes
from .allocation import magnitude_sparsities
from .blocks import find_blocks
from .calibration import check_calibration, check_token_ids
from .conv import skip_reason
from .layers import OneShotSettings, hf_conv1d_type, is_transposed
from .walk import calibrate_and_prune

logger = logging.getLogger(__name__)

SAME_ON_EVERY_RANK = {
    "settings": (SpecError, "the pruning specs, ignore lists or overrides",
                 "call pk.prune with the same arguments on every rank"),
    "model": (PlanError, "the models' weights",
              "build or load the same model on every rank (seed before building it, or load "
              "one checkpoint)"),
    "calibration": (CalibrationError, "the calibration batches",
                    "pass the same calibration list on every rank: prunekit runs each rank's "
                    "share of it (do not split it yourself)"),
}
PLANS_AGREE = {
    "plan": (PlanError, "the one-shot plans (keep-masks)",
             "the ranks agreed on model, data and settings; look for randomness in the "
             "model's forward (run it in eval mode) or nondeterministic kernels"),
}


def _tied(model: nn.Module) -> dict[int, list[str]]:
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append(qualified_name(name, pname))
    return owners


def oneshot_targets(
    model: nn.Module, ignore: Iterable[IgnoreEntry]
) -> tuple[list[Target], dict[str, str]]:
    """Linear, Hugging Face Conv1D and Conv2d weights to prune.

    Tied weights, and convolutions the methods do not cover (grouped, depthwise, non-zero
    padding modes; see :func:`.conv.skip_reason`), are left alone with the reason in
    ``skipped``.

    Raises:
        TargetError: nothing prunable remains.
    """
    types = (nn.Linear, nn.Conv2d) + hf_conv1d_type()
    targets, skipped = resolve_targets(model, ignore=ignore, types=types)
    owners = _tied(model)
    kept = []
    for t in targets:
        orig = getattr(t.module, "weight_orig", None)
        weight = orig if orig is not None else t.module.weight
        sharing = [n for n in owners.get(id(weight), []) if n.rpartition(".")[0] != t.module_name]
        reason = skip_reason(t.module) if isinstance(t.module, nn.Conv2d) else None
        if sharing:
            skipped[t.module_name] = f"weight tied to {', '.join(sharing)}"
        elif reason is not None:
            skipped[t.module_name] = reason
        else:
            kept.append(t)
    if not kept:
        raise TargetError("no untied Linear or Conv2d layer left to prune",
                          "check the ignore list (grouped and depthwise convolutions are "
                          "not covered)")
    return kept, skipped


def _check_spec(spec: Unstructured | NM, overrides: Mapping[IgnoreEntry, float] | None) -> None:
    if isinstance(spec, Unstructured) and spec.threshold is not None:
        raise SpecError(
            f"{spec.importance} prunes to a sparsity, not a threshold",
            f"use Unstructured(sparsity=0.5, importance={spec.importance!r})",
        )
    if isinstance(spec, Unstructured) and spec.scope != "layer":
        raise SpecError(
            f"{spec.importance} compares weights within each layer; scope={spec.scope!r} "
            "is not supported",
            "use scope='layer' (per-layer sparsity can be set with overrides=)",
        )
    if isinstance(spec, Unstructured) and spec.allocation != "uniform" and overrides:
        raise SpecError(
            f"allocation={spec.allocation!r} chooses every layer's sparsity; "
            "overrides= would fight it",
            "drop overrides= or use allocation='uniform'",
        )
    if isinstance(spec, NM) and overrides:
        raise SpecError("per-layer overrides do not apply to N:M", "use ignore= to skip layers")


class OneShotPipeline:
    """Wanda / SparseGPT through the common skeleton (:func:`prunekit.pipeline.run`).

    Args:
        spec: ``Unstructured(sparsity=..., importance="wanda"|"sparsegpt")`` (optionally
            ``allocation="owl"`` or ``"global"``, ``reconstruct="dense"``) or
            ``NM(2, 4, importance=...)``.
        request: calibration batches (required), ignore list, overrides, example inputs.
    """

    def __init__(self, spec: Unstructured | NM, request: Request) -> None:
        self.spec = spec
        self.request = request
        self.name = f"{spec.importance} pruning"

    def prepare(self, model: nn.Module) -> None:
        request, spec = self.request, self.spec
        request.refuse_unused(("calibration", "overrides"), self.name)
        self.batches = check_calibration(request.calibration, spec.importance)
        check_token_ids(model, self.batches)
        _check_spec(spec, request.overrides)
        targets, skipped = oneshot_targets(model, request.ignore)
        resolved = resolve_overrides(model, targets, request.overrides)
        check_finite(targets)
        if isinstance(spec, NM):
            check_nm_shapes(spec, targets, lambda t: 0 if is_transposed(t.module) else 1)
        self.outputs_before = (
            run_example(model, request.example_inputs)
            if request.example_inputs is not None else None
        )
        self.keys = [t.key for t in targets]
        self.block_names, self.calibration_note = self._walk_order(model)
        default = spec.sparsity if spec.sparsity is not None else 0.0
        allocation = spec.allocation if isinstance(spec, Unstructured) else "uniform"
        if allocation == "global":  # every layer's share is fixed here, before calibration
            sparsity = magnitude_sparsities(
                {t.key: effective_weight(t.module, t.param) for t in targets}, default)
            allocation = "uniform"
        else:
            sparsity = {t.key: resolved.get(t.key, default) for t in targets}
        self.settings = OneShotSettings(
            method=spec.importance,
            sparsity=sparsity,
            nm=(spec.n_keep, spec.m) if isinstance(spec, NM) else None,
            allocation=allocation,
            bias_correction=spec.bias_correction,
            reconstruct=spec.reconstruct,
        )
        self.skipped = skipped
        self.layers_before = layer_infos(model, [t.module_name for t in targets] + list(skipped))
        self.params_before = count_parameters(model)
        if active():
            self._check_ranks_agree(model)

    def _check_ranks_agree(self, model: nn.Module) -> None:
        """In a data-parallel job, every rank must prune the same model the same way."""
        settings = repr((self.spec.to_dict(), sorted(self.settings.sparsity.items())))
        check_same_on_every_rank({"settings": settings, "model": digest_model(model),
                                  "calibration": digest_batches(self.batches)},
                                 SAME_ON_EVERY_RANK)

    def _walk_order(self, model: nn.Module) -> tuple[list[str], str]:
        """The blocks calibration walks through, and how it will run, said in words."""
        with torch.no_grad(), eval_mode(model):
            blocks = [name for name, _ in find_blocks(model, self.keys, self.batches[0])]
        if blocks:
            return blocks, f"block by block ({len(blocks)} blocks, {blocks[0]} first)"
        if self.spec.reconstruct == "dense":
            raise SpecError(
                "reconstruct='dense' walks the model block by block, and this model has no "
                "list of same-typed blocks that run one after another",
                "use reconstruct='layer' (the default)",
            )
        note = ("whole model at once: no list of same-typed blocks runs one after another, so "
                "every targeted layer's statistics are collected in one pass")
        logger.info("%s: calibrating the %s", self.name, note)
        return blocks, note

    def writes(self) -> list[str]:
        return [key.rpartition(".")[0] for key in self.keys]  # weights, biases, masks

    def mutate(self, work: nn.Module) -> None:
        masks = calibrate_and_prune(work, self.keys, self.batches, self.settings,
                                    self.block_names)
        self.plan = Plan(
            spec=self.spec.to_dict(), masks=masks,
            shapes={k: list(m.shape) for k, m in masks.items()},
            skipped=dict(self.skipped), calibration=self.calibration_note,
        )
        if active():
            check_same_on_every_rank({"plan": digest_tensors(masks)}, PLANS_AGREE)

    def verify(self, work: nn.Module) -> None:
        if self.outputs_before is not None and self.request.example_inputs is not None:
            check_still_runs(work, self.request.example_inputs, self.outputs_before, self.name)

    def result(self, work: nn.Module) -> PruneResult:
        return PruneResult(work, self.plan, self.spec, self.layers_before, self.params_before)
