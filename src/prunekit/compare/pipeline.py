"""Pruning one variant from the dense model, and the deployable copy that gets measured."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..api import prune
from ..apply.masks import effective_weight, finalize
from ..result import PruneResult
from ..specs import NM, Spec
from ..targets import resolve_targets
from .variants import Variant

log = logging.getLogger(__name__)


def nm_misfits(model: nn.Module, spec: NM) -> list[str]:
    """Prunable layers whose input width is not a multiple of ``spec.m`` (left dense)."""
    targets, _ = resolve_targets(model)
    return [
        t.module_name for t in targets
        if effective_weight(t.module, t.param).shape[t.input_dim] % spec.m
    ]


def _merge(first: PruneResult, second: PruneResult) -> PruneResult:
    """One result for structured-then-unstructured: the first's surgery, the second's masks."""
    plan = dataclasses.replace(
        second.plan,
        kept=first.plan.kept,
        attributes=first.plan.attributes,
        removed_modules=first.plan.removed_modules,
        skipped={**first.plan.skipped, **second.plan.skipped},
    )
    return PruneResult(second.model, plan, second.spec, first.layers_before, first.params_before)


def _prune_once(model: nn.Module, spec: Spec, example: torch.Tensor, seed: int) -> PruneResult:
    ignore: list[str] = nm_misfits(model, spec) if isinstance(spec, NM) else []
    if ignore:
        log.info("N:M leaves %s dense (input width not a multiple of m)", ignore)
    return prune(model, spec, example, ignore=ignore, seed=seed)


def prune_variant(
    dense: nn.Module, variant: Variant, example: torch.Tensor, seed: int = 0
) -> PruneResult:
    """Apply the variant's specs in order to a copy of ``dense``.

    Args:
        dense: the trained dense model (not modified).
        variant: the recipe.
        example: example inputs (needed by structured pruning to trace the model).
        seed: pruning seed.

    Returns:
        One :class:`PruneResult` (for combined variants: the structured surgery and the
        masks of the second step in one plan).
    """
    result: PruneResult | None = None
    model = dense
    for spec in variant.specs:
        step = _prune_once(model, spec, example, seed)
        result = step if result is None else _merge(result, step)
        model = step.model
    assert result is not None, "a variant has at least one spec"
    return result


def deployable(model: nn.Module) -> nn.Module:
    """An eval-mode copy with masks baked in (what a dense runtime would execute)."""
    return finalize(copy.deepcopy(model)).eval()


def save_bytes(result: PruneResult | nn.Module, folder: Path, model_ref: str) -> dict[str, Any]:
    """Save in the prunekit format and return ``{"path", "bytes"}`` (or a reason it failed).

    Returns:
        ``{"path": str, "bytes": int}``, or ``{"error": str}`` if saving is unavailable.
    """
    try:
        from ..io import artifact_bytes, save
    except ImportError as exc:  # pragma: no cover - only before the io package exists
        return {"error": f"prunekit.io unavailable: {exc}"}
    ref = model_ref if ":" in model_ref else f"zoo:{model_ref}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = save(result, folder, overwrite=True, model_ref=ref)
    return {"path": str(path), "bytes": artifact_bytes(path)}


def layer_table(model: nn.Module, dense: nn.Module) -> list[dict[str, Any]]:
    """Per conv/linear layer: output width now and in the dense model, and weight sparsity."""
    dense_modules = dict(dense.named_modules())
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        weight = module.weight.detach()
        before = dense_modules.get(name)
        dense_width = before.weight.shape[0] if isinstance(before, (nn.Conv2d, nn.Linear)) else None
        rows.append({
            "name": name,
            "width": int(weight.shape[0]),
            "dense_width": int(dense_width) if dense_width is not None else None,
            "sparsity": float((weight == 0).sum()) / max(1, weight.numel()),
        })
    return rows
