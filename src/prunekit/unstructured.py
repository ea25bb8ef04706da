"""Unstructured and N:M pruning to the masked end state: validate, plan, apply."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .apply.masks import apply_mask, effective_weight, existing_mask
from .errors import ShapeError, SpecError, WeightError
from .importance import weight_scores
from .plan import Plan
from .select.nm import nm_mask
from .select.unstructured import check_not_reviving, global_masks, layer_masks, threshold_masks
from .specs import NM, Unstructured
from .targets import Target


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
        s = weight_scores(importance, effective_weight(t.module), generator)
        mask = existing_mask(t.module)
        scores[t.key] = s if mask is None else s.masked_fill(~mask.cpu(), -math.inf)
    return scores


def _already_removed(targets: list[Target]) -> dict[str, int]:
    removed = {}
    for t in targets:
        mask = existing_mask(t.module)
        if mask is not None:
            removed[t.key] = int((~mask).sum())
    return removed


def _unstructured_masks(
    spec: Unstructured, scores: dict[str, torch.Tensor], overrides: Mapping[str, float]
) -> dict[str, torch.Tensor]:
    if spec.threshold is not None:
        masks = threshold_masks(scores, spec.threshold)
        fixed = {k: v for k, v in scores.items() if k in overrides}
        masks.update(layer_masks(fixed, dict(overrides)))
        return masks
    assert spec.sparsity is not None
    if spec.scope == "layer":
        return layer_masks(scores, {k: overrides.get(k, spec.sparsity) for k in scores})
    ranked = {k: v for k, v in scores.items() if k not in overrides}
    masks = global_masks(ranked, spec.sparsity) if ranked else {}
    masks.update(layer_masks({k: scores[k] for k in overrides}, dict(overrides)))
    return masks


def plan_masks(
    spec: Unstructured | NM,
    targets: list[Target],
    skipped: dict[str, str],
    overrides: Mapping[str, float],
    seed: int = 0,
) -> Plan:
    """Decide the keep-mask of every target (pure with respect to the model)."""
    if isinstance(spec, NM) and overrides:
        raise SpecError("per-layer overrides do not apply to N:M", "use ignore= to skip layers")
    scores = target_scores(targets, spec.importance, seed)
    if isinstance(spec, NM):
        masks = {t.key: nm_mask(scores[t.key], spec.n_keep, spec.m, t.input_dim) for t in targets}
    else:
        masks = _unstructured_masks(spec, scores, overrides)
    check_not_reviving(_already_removed(targets), masks)
    shapes = {key: list(mask.shape) for key, mask in masks.items()}
    return Plan(spec=spec.to_dict(), masks=masks, shapes=shapes, skipped=dict(skipped))


def check_nm_shapes(spec: NM, targets: Iterable[Target]) -> None:
    """Raise ShapeError naming every target whose input width m does not divide."""
    bad = [
        f"{t.key} (input width {effective_weight(t.module).shape[t.input_dim]})"
        for t in targets
        if effective_weight(t.module).shape[t.input_dim] % spec.m
    ]
    if bad:
        raise ShapeError(
            f"N:M with m={spec.m} needs input widths divisible by {spec.m}: {', '.join(bad)}",
            "ignore these layers (ignore=[...]) or choose another m",
        )


def apply_masks(model: nn.Module, plan: Plan) -> None:
    """Mask every parameter named in ``plan.masks`` (state-dict style keys)."""
    for key, mask in plan.masks.items():
        module_name, _, param = key.rpartition(".")
        apply_mask(model.get_submodule(module_name), mask, param)
