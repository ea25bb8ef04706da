"""What recovery fine-tuning must not change: masks, pruned zeros and shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..apply.masks import effective_weight, masked_modules
from ..errors import PlanError


@dataclass(frozen=True)
class Snapshot:
    """Shapes of every parameter/buffer and the zero pattern of every masked weight."""

    shapes: dict[str, tuple[int, ...]]
    masks: dict[str, torch.Tensor]


def snapshot(model: nn.Module) -> Snapshot:
    """Record what fine-tuning must hold fixed."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    masks = {
        f"{name}.{param}": getattr(module, f"{param}_mask").detach().bool().clone()
        for name, module, param in masked_modules(model)
    }
    return Snapshot(shapes, masks)


def check_unchanged(model: nn.Module, before: Snapshot) -> None:
    """Raise if a shape or mask changed or a pruned weight became nonzero.

    Raises:
        PlanError: naming each tensor that moved.
    """
    after = snapshot(model)
    problems = [
        f"{k}: shape {before.shapes.get(k)} -> {after.shapes.get(k)}"
        for k in sorted(set(before.shapes) | set(after.shapes))
        if before.shapes.get(k) != after.shapes.get(k)
    ]
    for key, mask in before.masks.items():
        if key not in after.masks or not torch.equal(after.masks[key], mask):
            problems.append(f"{key}: mask changed")
            continue
        module_name, _, param = key.rpartition(".")
        weight = effective_weight(model.get_submodule(module_name), param)
        if bool((weight[~mask] != 0).any()):
            problems.append(f"{key}: pruned weights became nonzero")
    if problems:
        raise PlanError("fine-tuning changed the pruned structure: " + "; ".join(problems))
