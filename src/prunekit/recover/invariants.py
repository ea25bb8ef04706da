"""What recovery fine-tuning must not change: masks, pruned zeros and shapes."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..apply.masks import effective_weight, masked_modules
from ..errors import PlanError
from ..targets import qualified_name


@dataclass(frozen=True)
class Snapshot:
    """Shapes of every parameter/buffer (by logical name: ``weight``, not ``weight_orig``),
    the zero pattern of every masked weight, and the pruned zeros of unmasked weights that
    must stay zero (``{name: True at the zeros}``)."""

    shapes: dict[str, tuple[int, ...]]
    masks: dict[str, torch.Tensor]
    zeros: dict[str, torch.Tensor] = field(default_factory=dict)


def snapshot(model: nn.Module, zeros: Mapping[str, torch.Tensor] | None = None) -> Snapshot:
    """Record what fine-tuning must hold fixed.

    Args:
        model: the model before training.
        zeros: ``{parameter name: True where it must stay zero}`` for weights without a
            mask (a finalized model's pruned zeros, see :class:`.zeros.ZeroHold`).

    Returns:
        The :class:`Snapshot`.
    """
    masks = {
        qualified_name(name, param):
            getattr(module, f"{param}_mask").detach().bool().clone()
        for name, module, param in masked_modules(model)
    }
    shapes = {_logical(k, masks): tuple(v.shape) for k, v in model.state_dict().items()
              if not (k.endswith("_mask") and k.removesuffix("_mask") in masks)}
    held = {k: v.detach().clone() for k, v in (zeros or {}).items()}
    return Snapshot(shapes, masks, held)


def check_unchanged(model: nn.Module, before: Snapshot, *, may_shrink: bool = False) -> None:
    """Raise if a shape or mask changed or a pruned weight (masked, or held in
    ``before.zeros``) became nonzero.

    Args:
        model: the model after fine-tuning.
        before: its :func:`snapshot` from before.
        may_shrink: gradual pruning ran, so masks may have lost entries (never gained).

    Raises:
        PlanError: naming each tensor that moved.
    """
    after = snapshot(model)
    problems = [
        f"{k}: shape {before.shapes.get(k)} -> {after.shapes.get(k)}"
        for k in sorted(set(before.shapes) | set(after.shapes))
        if before.shapes.get(k) != after.shapes.get(k)
    ]
    if not may_shrink:
        added = [k for k in after.masks if k not in before.masks]
        problems += [f"{k}: masked during fine-tuning" for k in added]
    for key, mask in before.masks.items():
        if key not in after.masks or not _mask_ok(after.masks[key], mask, may_shrink):
            problems.append(f"{key}: mask changed" + (" (revived weights)" if may_shrink else ""))
            continue
        module_name, _, param = key.rpartition(".")
        weight = effective_weight(model.get_submodule(module_name), param)
        if bool((weight[~after.masks[key]] != 0).any()):
            problems.append(f"{key}: pruned weights became nonzero")
    for key, held in before.zeros.items():
        module_name, _, param = key.rpartition(".")
        weight = effective_weight(model.get_submodule(module_name), param)
        if bool((weight[held] != 0).any()):
            problems.append(f"{key}: pruned weights became nonzero")
    if problems:
        raise PlanError("fine-tuning changed the pruned structure: " + "; ".join(problems))


def _logical(key: str, masked: Container[str]) -> str:
    """``conv.weight_orig`` -> ``conv.weight`` for masked parameters (their logical name)."""
    stem = key.removesuffix("_orig")
    return stem if key.endswith("_orig") and stem in masked else key


def _mask_ok(after: torch.Tensor, before: torch.Tensor, may_shrink: bool) -> bool:
    if after.shape != before.shape:
        return False
    if may_shrink:
        return not bool((after & ~before).any())
    return torch.equal(after, before)
