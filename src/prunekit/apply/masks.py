"""The masked end state: ``weight = weight_orig * weight_mask``, recomputed every forward.

Masking ``module.weight`` moves the trainable tensor to ``weight_orig`` (same Parameter
object, so optimizers keep working) and adds a bool ``weight_mask`` buffer (True = kept).
A forward pre-hook computes the masked weight for the forward pass, so pruned weights are
exactly zero in every forward and receive zero gradient; a forward hook then leaves a
detached copy behind, so the model deep-copies and pickles like any module.

Some parents read a child's weight directly instead of calling the child
(``nn.MultiheadAttention`` reads ``out_proj.weight``; ``nn.TransformerEncoderLayer``'s
fast path reads ``linear1/linear2/self_attn.out_proj`` weights). Their masked children get
a :class:`ChildMaskHook` on the parent as well, so the masked weight is fresh (and
gradients reach ``weight_orig``) whichever module reads it.

:func:`finalize` bakes the zeros in and restores the original state-dict keys.
"""

from __future__ import annotations

import torch
from torch import nn

# Parents whose forward reads a descendant's weight without calling the descendant.
DIRECT_READERS: tuple[type[nn.Module], ...] = (nn.MultiheadAttention, nn.TransformerEncoderLayer)


class MaskHook:
    """Forward pre-hook (sets the masked weight) and forward hook (detaches it after)."""

    def __init__(self, param: str) -> None:
        self.param = param

    def masked(self, module: nn.Module) -> torch.Tensor:
        """``<param>_orig * <param>_mask`` (differentiable with respect to ``_orig``)."""
        orig = getattr(module, f"{self.param}_orig")
        mask = getattr(module, f"{self.param}_mask")
        return orig * mask

    def __call__(self, module: nn.Module, *args: object) -> None:
        if len(args) == 1:  # pre-hook: (module, inputs)
            setattr(module, self.param, self.masked(module))
        else:  # forward hook: (module, inputs, output); the graph keeps its own reference
            setattr(module, self.param, self.masked(module).detach())


class ChildMaskHook:
    """Pre/post forward hook on a parent that reads ``<child>.<param>`` directly."""

    def __init__(self, child: str, param: str) -> None:
        self.child = child
        self.param = param

    def __call__(self, module: nn.Module, *args: object) -> None:
        child = module.get_submodule(self.child)
        if is_masked(child, self.param):  # a no-op once the child is unmasked
            MaskHook(self.param)(child, *args)


def is_masked(module: nn.Module, param: str = "weight") -> bool:
    """True if ``module.<param>`` carries a prunekit mask."""
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


def apply_mask(
    module: nn.Module, mask: torch.Tensor, param: str = "weight", *, zeros_applied: bool = False
) -> None:
    """Mask ``module.<param>`` with ``mask`` (True = kept); an existing mask only shrinks.

    Args:
        module: the module that owns the parameter.
        mask: keep-mask, bool or 0/1 values; a bool mask on the parameter's device becomes
            the ``<param>_mask`` buffer itself (no copy). The buffer is bool: a quarter of
            a float mask's memory, and ``orig * mask`` stays in the parameter's dtype.
        param: the parameter's name.
        zeros_applied: the caller guarantees that ``<param>`` is already zero wherever
            ``mask`` is 0 (weights just loaded from a pruned artefact), so ``orig * mask``
            equals ``orig`` exactly and is not recomputed: until the next forward,
            ``module.<param>`` is a detached view of ``<param>_orig``. Ignored when the
            parameter is already masked.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> apply_mask(layer, torch.tensor([[True, False], [False, True]]))
        >>> sorted(name for name, _ in layer.named_parameters())
        ['bias', 'weight_orig']
        >>> int((layer.weight == 0).sum())
        2
    """
    if is_masked(module, param):
        buffer: torch.Tensor = getattr(module, f"{param}_mask")
        buffer.mul_(mask.to(device=buffer.device, dtype=buffer.dtype))
        setattr(module, param, MaskHook(param).masked(module).detach())
        return
    orig = module._parameters[param]
    assert isinstance(orig, nn.Parameter), f"{param} is not a parameter"
    _rename_parameter(module, param, f"{param}_orig")
    module.register_buffer(f"{param}_mask", mask.to(device=orig.device, dtype=torch.bool))
    hook = MaskHook(param)
    module.register_forward_pre_hook(hook)
    module.register_forward_hook(hook, always_call=True)  # detach even if forward fails
    masked = orig.detach() if zeros_applied else hook.masked(module).detach()
    setattr(module, param, masked)


def _rename_parameter(module: nn.Module, old: str, new: str) -> None:
    """Rename a registered parameter in place, keeping its position (state-dict order)."""
    items = [(new if name == old else name, p) for name, p in module._parameters.items()]
    module._parameters.clear()
    module._parameters.update(items)


def refresh_from_parents(model: nn.Module, module_name: str, param: str = "weight") -> None:
    """Give every :data:`DIRECT_READERS` ancestor of ``module_name`` a :class:`ChildMaskHook`."""
    parts = module_name.split(".")
    for depth in range(len(parts)):
        parent = model.get_submodule(".".join(parts[:depth]))
        if not isinstance(parent, DIRECT_READERS):
            continue
        child = ".".join(parts[depth:])
        hooks = parent._forward_pre_hooks.values()
        if any(isinstance(h, ChildMaskHook) and (h.child, h.param) == (child, param)
               for h in hooks):
            continue
        hook = ChildMaskHook(child, param)
        parent.register_forward_pre_hook(hook)
        parent.register_forward_hook(hook, always_call=True)


def _remove_mask_hooks(module: nn.Module, param: str) -> None:
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        doomed = [k for k, h in hooks.items() if isinstance(h, MaskHook) and h.param == param]
        for key in doomed:
            del hooks[key]


def masked_modules(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """Every ``(module name, module, param)`` that currently carries a mask."""
    return [
        (name, module, hook.param)
        for name, module in model.named_modules()
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, MaskHook)
    ]


def unmask(module: nn.Module, param: str = "weight", *, bake: bool = True) -> None:
    """Remove one mask: the ``_orig`` Parameter becomes ``param`` again (same object).

    Args:
        module: a module with ``<param>_orig`` and ``<param>_mask``.
        param: the masked parameter's name.
        bake: multiply the mask into the weight first (pruned weights become exactly 0);
            ``False`` restores the weight as it was before masking.
    """
    orig: nn.Parameter = getattr(module, f"{param}_orig")
    mask: torch.Tensor = getattr(module, f"{param}_mask")
    if bake:
        with torch.no_grad():
            orig.mul_(mask)
    _remove_mask_hooks(module, param)
    module.__dict__.pop(param, None)
    del module._buffers[f"{param}_mask"]
    _rename_parameter(module, f"{param}_orig", param)


def drop_stale_parent_hooks(model: nn.Module) -> None:
    """Remove every :class:`ChildMaskHook` whose child is no longer masked."""
    for module in model.modules():
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            stale = [
                key
                for key, hook in hooks.items()
                if isinstance(hook, ChildMaskHook)
                and not is_masked(module.get_submodule(hook.child), hook.param)
            ]
            for key in stale:
                del hooks[key]


def finalize(model: nn.Module) -> nn.Module:
    """Bake every mask into its weight and remove the masks, in place.

    Afterwards ``model.state_dict()`` has the original keys, pruned weights are exactly
    zero, outputs are unchanged and each weight is the same Parameter object that was
    trained as ``weight_orig``. Returns ``model`` for chaining.

    Example:
        >>> import prunekit as pk, torch
        >>> m = torch.nn.Linear(4, 4)
        >>> _ = pk.prune(m, pk.Unstructured(sparsity=0.5), inplace=True)
        >>> sorted(pk.finalize(m).state_dict())
        ['bias', 'weight']
    """
    for _, module, param in masked_modules(model):
        unmask(module, param)
    drop_stale_parent_hooks(model)
    return model
