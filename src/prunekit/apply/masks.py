"""The masked end state: ``weight = weight_orig * weight_mask``, recomputed every forward.

Masking ``module.weight`` moves the trainable tensor to ``weight_orig`` (same Parameter
object, so optimizers keep working) and adds a ``weight_mask`` buffer (True/1 = kept).
A forward pre-hook computes the masked weight for the forward pass, so pruned weights are
exactly zero in every forward and receive zero gradient; a forward hook then leaves a
detached copy behind, so the model deep-copies and pickles like any module.
:func:`finalize` bakes the zeros in and restores the original state-dict keys.
"""

from __future__ import annotations

import torch
from torch import nn


class MaskHook:
    """Forward pre-hook (sets the masked weight) and forward hook (detaches it after)."""

    def __init__(self, param: str) -> None:
        self.param = param

    def masked(self, module: nn.Module) -> torch.Tensor:
        orig = getattr(module, f"{self.param}_orig")
        mask = getattr(module, f"{self.param}_mask")
        return orig * mask

    def __call__(self, module: nn.Module, *args: object) -> None:
        if len(args) == 1:  # pre-hook: (module, inputs)
            setattr(module, self.param, self.masked(module))
        else:  # forward hook: (module, inputs, output); the graph keeps its own reference
            setattr(module, self.param, self.masked(module).detach())


def is_masked(module: nn.Module, param: str = "weight") -> bool:
    return isinstance(getattr(module, f"{param}_orig", None), nn.Parameter) and hasattr(
        module, f"{param}_mask"
    )


def existing_mask(module: nn.Module, param: str = "weight") -> torch.Tensor | None:
    """The keep-mask (bool) on ``module.<param>``, or None if it is not masked."""
    if not is_masked(module, param):
        return None
    mask: torch.Tensor = getattr(module, f"{param}_mask")
    return mask.bool()


def effective_weight(module: nn.Module, param: str = "weight") -> torch.Tensor:
    """The weight the module computes with (``orig * mask`` if masked), detached."""
    if is_masked(module, param):
        return MaskHook(param).masked(module).detach()
    weight: torch.Tensor = getattr(module, param)
    return weight.detach()


def apply_mask(module: nn.Module, mask: torch.Tensor, param: str = "weight") -> None:
    """Mask ``module.<param>`` with ``mask`` (True = kept); an existing mask only shrinks."""
    if is_masked(module, param):
        buffer: torch.Tensor = getattr(module, f"{param}_mask")
        buffer.mul_(mask.to(device=buffer.device, dtype=buffer.dtype))
    else:
        orig = module._parameters.pop(param)
        assert isinstance(orig, nn.Parameter), f"{param} is not a parameter"
        module.register_parameter(f"{param}_orig", orig)
        module.register_buffer(f"{param}_mask", mask.to(device=orig.device, dtype=orig.dtype))
        hook = MaskHook(param)
        module.register_forward_pre_hook(hook)
        module.register_forward_hook(hook)
    setattr(module, param, MaskHook(param).masked(module).detach())


def _remove_hooks(module: nn.Module, param: str) -> None:
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for key in [k for k, h in hooks.items() if isinstance(h, MaskHook) and h.param == param]:
            del hooks[key]


def masked_modules(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """Every ``(module name, module, param)`` that currently carries a mask."""
    return [
        (name, module, hook.param)
        for name, module in model.named_modules()
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, MaskHook)
    ]


def unmask(module: nn.Module, param: str = "weight") -> None:
    """Bake one mask into its weight: the ``_orig`` Parameter becomes ``param`` again."""
    orig: nn.Parameter = getattr(module, f"{param}_orig")
    mask: torch.Tensor = getattr(module, f"{param}_mask")
    with torch.no_grad():
        orig.mul_(mask)
    _remove_hooks(module, param)
    delattr(module, param)
    del module._parameters[f"{param}_orig"]
    del module._buffers[f"{param}_mask"]
    module.register_parameter(param, orig)


def finalize(model: nn.Module) -> nn.Module:
    """Bake every mask into its weight and remove the masks, in place.

    Afterwards ``model.state_dict()`` has the original keys, pruned weights are exactly
    zero and outputs are unchanged. Returns ``model`` for chaining.

    Example:
        >>> import prunekit as pk, torch
        >>> m = torch.nn.Linear(4, 4)
        >>> _ = pk.prune(m, pk.Unstructured(sparsity=0.5), inplace=True)
        >>> sorted(pk.finalize(m).state_dict())
        ['bias', 'weight']
    """
    for _, module, param in masked_modules(model):
        unmask(module, param)
    return model
