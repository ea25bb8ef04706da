"""Unstructured and N:M pruning to the masked end state: validate, plan, apply; and
re-applying a saved mask plan."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from .apply.masks import (
    DIRECT_READERS,
    apply_mask,
    effective_weight,
    existing_mask,
)
from .errors import InternalError, PlanError, ShapeError, SpecError, WeightError
from .importance import weight_scores
from .inputs import record_calls, run_example
from .pipeline.request import Request
from .pipeline.verify import check_still_runs
from .plan import Plan
from .result import PruneResult
from .select.nm import nm_mask
from .select.unstructured import (
    check_not_reviving,
    count_removed,
    global_masks,
    layer_masks,
    threshold_masks,
)
from .specs import NM, Unstructured
from .summary import count_parameters, layer_infos
from .targets import Target, qualified_name, resolve_overrides, resolve_targets

logger = logging.getLogger(__name__)


def check_finite(targets: list[Target]) -> None:
    """Raise WeightError naming every targeted weight that holds NaN or inf."""
    bad = [t.key for t in targets if not bool(torch.isfinite(effective_weight(t.module)).all())]
    if bad:
        raise WeightError(
            f"weights contain NaN or inf: {', '.join(bad)}",
            "fix or re-initialise these weights (or ignore these layers) before pruning",
        )


def target_scores(
    targets: list[Target], importance: str, seed: int
) -> dict[str, torch.Tensor]:
    """Score every targeted weight; already-pruned weights score -inf so they go first."""
    generator = torch.Generator().manual_seed(seed)
    scores = {}
    for t in targets:
        weight = effective_weight(t.module)
        s = weight_scores(importance, weight, generator).to(weight.device)
        mask = existing_mask(t.module)
        scores[t.key] = s if mask is None else s.masked_fill_(~mask, -math.inf)
    return scores


def _already_removed(targets: list[Target]) -> dict[str, int]:
    removed = {}
    for t in targets:
        mask = existing_mask(t.module)
        if mask is not None:
            removed[t.key] = count_removed(mask)
    return removed


def _unstructured_masks(
    spec: Unstructured, scores: dict[str, torch.Tensor], overrides: Mapping[str, float]
) -> dict[str, torch.Tensor]:
    fixed = {k: v for k, v in scores.items() if k in overrides}
    masks = layer_masks(fixed, dict(overrides))
    ranked = {k: v for k, v in scores.items() if k not in overrides}
    if spec.threshold is not None:
        masks.update(threshold_masks(ranked, spec.threshold))
    elif spec.scope == "layer":
        assert spec.sparsity is not None
        masks.update(layer_masks(ranked, dict.fromkeys(ranked, spec.sparsity)))
    elif ranked:
        assert spec.sparsity is not None
        masks.update(global_masks(ranked, spec.sparsity))
    return {k: masks[k] for k in scores}  # target order


def _nm_masks(spec: NM, targets: list[Target], scores: dict[str, torch.Tensor]) -> dict[
    str, torch.Tensor
]:
    masks = {}
    for t in targets:
        mask = nm_mask(scores[t.key], spec.n_keep, spec.m, t.input_dim)
        previous = existing_mask(t.module)
        masks[t.key] = mask if previous is None else mask & previous  # only ever removes more
    return masks


def plan_masks(
    spec: Unstructured | NM,
    targets: list[Target],
    skipped: dict[str, str],
    overrides: Mapping[str, float],
    seed: int = 0,
) -> Plan:
    """Decide the keep-mask of every target (pure with respect to the model).

    Raises:
        SpecError: overrides given for N:M, or a sparsity below what is already pruned.
    """
    if isinstance(spec, NM) and overrides:
        raise SpecError("per-layer overrides do not apply to N:M", "use ignore= to skip layers")
    scores = target_scores(targets, spec.importance, seed)
    if isinstance(spec, NM):
        masks = _nm_masks(spec, targets, scores)
    else:
        masks = _unstructured_masks(spec, scores, overrides)
    for t in targets:  # tied holders share the leader's mask
        masks.update({qualified_name(name, t.param): masks[t.key] for name in t.tied})
    already = _already_removed(targets)
    check_not_reviving(already, masks)
    _warn_if_nothing_removed(spec, masks, already)
    masks = {key: mask.cpu() for key, mask in masks.items()}
    shapes = {key: list(mask.shape) for key, mask in masks.items()}
    return Plan(spec=spec.to_dict(), masks=masks, shapes=shapes, skipped=dict(skipped))


def _warn_if_nothing_removed(
    spec: Unstructured | NM, masks: dict[str, torch.Tensor], already: dict[str, int]
) -> None:
    newly = sum(count_removed(m) - already.get(key, 0) for key, m in masks.items())
    if newly == 0:
        logger.warning(
            "%s removes no weight from the %d targeted layers (nothing scored below the "
            "threshold, sparsity 0, or already pruned to this level)", spec, len(masks)
        )


def nm_misfits(
    spec: NM, targets: Iterable[Target], input_dim: Callable[[Target], int] | None = None
) -> list[Target]:
    """Targets whose input width is not a multiple of ``spec.m`` (N:M cannot apply).

    Args:
        input_dim: the weight dimension of each target's inputs (default
            :attr:`Target.input_dim`; Hugging Face Conv1D stores its weight transposed).
    """
    dim = input_dim or (lambda t: t.input_dim)
    return [t for t in targets if effective_weight(t.module).shape[dim(t)] % spec.m]


def check_nm_shapes(
    spec: NM, targets: Iterable[Target], input_dim: Callable[[Target], int] | None = None
) -> None:
    """Raise ShapeError naming every target whose input width m does not divide."""
    bad = nm_misfits(spec, targets, input_dim)
    if bad:
        dim = input_dim or (lambda t: t.input_dim)
        widths = [f"{t.key} (input width {effective_weight(t.module).shape[dim(t)]})"
                  for t in bad]
        raise ShapeError(
            f"N:M with m={spec.m} needs input widths divisible by {spec.m}: {', '.join(widths)}",
            f"ignore these layers (ignore={[t.module_name for t in bad]!r}) or choose another m",
        )


IDLE_NOTE = "its forward did not run on the example inputs"


def idle_targets(model: nn.Module, targets: list[Target], called: set[str]) -> list[str]:
    """Targets whose forward did not run, and whose weight no known parent reads directly.

    Such a layer is unused on these inputs (an auxiliary head in eval mode), or its weight
    is read by code outside its own forward (which sees the masked weight: it is computed
    on every read). Either is worth a line in the summary.
    """
    idle = []
    for t in targets:
        parts = t.module_name.split(".")
        ancestors = (model.get_submodule(".".join(parts[:d])) for d in range(len(parts)))
        if t.module_name not in called and not any(
            isinstance(a, DIRECT_READERS) for a in ancestors
        ):
            idle.append(t.module_name)
    if idle:
        logger.warning(
            "%d targeted layers did not run on the example inputs: %s (unused on these inputs, "
            "or their weights are read by other code); they are pruned all the same",
            len(idle), ", ".join(idle),
        )
    return idle


def _split_key(key: str) -> tuple[str, str]:
    module_name, _, param = key.rpartition(".")
    return module_name, param


def apply_masks(model: nn.Module, plan: Plan) -> None:
    """Mask every parameter named in ``plan.masks`` (state-dict style keys)."""
    for key, mask in plan.masks.items():
        module_name, param = _split_key(key)
        apply_mask(model.get_submodule(module_name), mask, param)


class MaskedPipeline:
    """Magnitude / random unstructured and N:M pruning to the masked end state.

    Args:
        spec: an :class:`Unstructured` or :class:`NM` spec with a data-free importance.
        request: ignore list, overrides, ``include_embeddings``, example inputs, seed.
    """

    def __init__(self, spec: Unstructured | NM, request: Request) -> None:
        self.spec = spec
        self.request = request
        kind = "N:M" if isinstance(spec, NM) else "unstructured"
        self.name = f"{kind} {spec.importance} pruning"

    def prepare(self, model: nn.Module) -> None:
        request, spec = self.request, self.spec
        request.refuse_unused(("overrides", "include_embeddings"), self.name)
        targets, skipped = resolve_targets(
            model, ignore=request.ignore, include_embeddings=request.include_embeddings
        )
        overrides = resolve_overrides(model, targets, request.overrides)
        check_finite(targets)
        if isinstance(spec, NM):
            check_nm_shapes(spec, targets)
        self.outputs_before, idle = None, []
        if request.example_inputs is not None:
            with record_calls({t.module_name: t.module for t in targets}) as called:
                self.outputs_before = run_example(model, request.example_inputs)
            idle = idle_targets(model, targets, called)
        self.plan = plan_masks(spec, targets, skipped, overrides, request.seed)
        self.plan.notes.update(dict.fromkeys(idle, IDLE_NOTE))
        listed = {t.module_name for t in targets} | set(skipped)
        names = [n for n, _ in model.named_modules() if n in listed]
        self.layers_before = layer_infos(model, names)
        self.params_before = count_parameters(model)

    def writes(self) -> list[str]:
        return [_split_key(key)[0] for key in self.plan.masks]  # an existing mask shrinks in place

    def mutate(self, work: nn.Module) -> None:
        apply_masks(work, self.plan)

    def verify(self, work: nn.Module) -> None:
        if self.outputs_before is not None and self.request.example_inputs is not None:
            check_still_runs(work, self.request.example_inputs, self.outputs_before, self.name)

    def result(self, work: nn.Module) -> PruneResult:
        return PruneResult(work, self.plan, self.spec, self.layers_before, self.params_before)


class ApplyPlanPipeline:
    """Re-apply a saved mask plan to a model of the same architecture."""

    name = "apply_plan"

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def prepare(self, model: nn.Module) -> None:
        if self.plan.kept or self.plan.attributes or self.plan.removed_modules:
            raise PlanError(
                "apply_plan re-applies mask plans; this is a structured plan (new shapes, "
                "whose values come from the pruned weights)",
                "load the saved result with pk.load(path)",
            )
        problems = [p for key, mask in self.plan.masks.items()
                    if (p := _plan_mismatch(model, key, mask))]
        if problems:
            raise PlanError("the plan does not fit the model: " + "; ".join(problems))

    def writes(self) -> list[str]:
        return [_split_key(key)[0] for key in self.plan.masks]

    def mutate(self, work: nn.Module) -> None:
        apply_masks(work, self.plan)

    def verify(self, work: nn.Module) -> None:
        for key, mask in self.plan.masks.items():
            module_name, param = _split_key(key)
            kept = existing_mask(work.get_submodule(module_name), param)
            if kept is None or not bool((kept <= mask.to(kept.device)).all()):
                raise InternalError(f"apply_plan: {key} does not carry the plan's mask")

    def result(self, work: nn.Module) -> nn.Module:
        return work


def _plan_mismatch(model: nn.Module, key: str, mask: torch.Tensor) -> str | None:
    """Why the plan's ``key`` does not fit ``model``, or None."""
    module_name, param = _split_key(key)
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        return f"{key}: no such module"
    if not hasattr(module, param) and not hasattr(module, f"{param}_orig"):
        return f"{key}: no such parameter"
    shape = tuple(effective_weight(module, param).shape)
    if shape != tuple(mask.shape):
        return f"{key}: model shape {shape} != plan shape {tuple(mask.shape)}"
    return None
