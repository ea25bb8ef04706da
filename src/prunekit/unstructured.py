"""Unstructured and N:M pruning to the masked end state: validate, plan, apply."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .apply.masks import (
    DIRECT_READERS,
    apply_mask,
    drop_stale_parent_hooks,
    effective_weight,
    existing_mask,
    refresh_from_parents,
    unmask,
)
from .errors import ShapeError, SpecError, WeightError
from .importance import weight_scores
from .plan import Plan
from .select.nm import nm_mask
from .select.unstructured import (
    check_not_reviving,
    count_removed,
    global_masks,
    layer_masks,
    threshold_masks,
)
from .specs import NM, Unstructured
from .targets import Target, qualified_name

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


def check_nm_shapes(spec: NM, targets: Iterable[Target]) -> None:
    """Raise ShapeError naming every target whose input width m does not divide."""
    width = {t.key: effective_weight(t.module).shape[t.input_dim] for t in targets}
    bad = [t for t in targets if width[t.key] % spec.m]
    if bad:
        widths = [f"{t.key} (input width {width[t.key]})" for t in bad]
        raise ShapeError(
            f"N:M with m={spec.m} needs input widths divisible by {spec.m}: {', '.join(widths)}",
            f"ignore these layers (ignore={[t.module_name for t in bad]!r}) or choose another m",
        )


IDLE_NOTE = "its forward did not run on the example inputs"


def idle_targets(model: nn.Module, targets: list[Target], called: set[str]) -> list[str]:
    """Targets whose forward did not run, and whose weight no known parent reads directly.

    Such a layer is unused on these inputs (an auxiliary head in eval mode), or its weight
    is read by code outside its own forward, which would see the masked value only as of
    the layer's last forward. Both are worth a line in the summary.
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
            "%d targeted layers did not run on the example inputs: %s; if other code reads "
            "their weights directly, it sees the mask only as of their last forward",
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
        refresh_from_parents(model, module_name, param)


def snapshot_masks(model: nn.Module, plan: Plan) -> dict[str, torch.Tensor | None]:
    """The current mask (a copy) or None of every parameter ``plan`` will mask."""
    snapshot: dict[str, torch.Tensor | None] = {}
    for key in plan.masks:
        module_name, param = _split_key(key)
        mask = existing_mask(model.get_submodule(module_name), param)
        snapshot[key] = None if mask is None else mask.clone()
    return snapshot


def restore_masks(model: nn.Module, snapshot: dict[str, torch.Tensor | None]) -> None:
    """Undo :func:`apply_masks`: put back the masks (or the dense weights) of a snapshot."""
    for key, previous in snapshot.items():
        module_name, param = _split_key(key)
        module = model.get_submodule(module_name)
        if existing_mask(module, param) is None:
            continue
        if previous is None:
            unmask(module, param, bake=False)
        else:
            buffer: torch.Tensor = getattr(module, f"{param}_mask")
            buffer.copy_(previous)
            apply_mask(module, previous, param)
    drop_stale_parent_hooks(model)
