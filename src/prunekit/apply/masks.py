"""The masked end state: ``weight = weight_orig * weight_mask``, computed whenever it is read.

Masking ``module.weight`` moves the trainable tensor to ``weight_orig`` (same Parameter
object, so optimizers keep working) and adds a bool ``weight_mask`` buffer (True = kept).
The module's class becomes a subclass of its own class with :class:`MaskedWeights` in
front (the prior art is ``torch.nn.utils.parametrize``), whose ``__getattr__`` answers
``module.weight`` with ``weight_orig * weight_mask``. So every read is current: in any
forward (pruned weights are exactly zero and receive zero gradient), after an optimizer
step, after ``.to()`` / ``.half()`` / ``.cuda()``, and in parents that read a child's
weight directly (``nn.MultiheadAttention`` reads ``out_proj.weight``;
``nn.TransformerEncoderLayer``'s fast path reads ``linear1/linear2/self_attn.out_proj``
weights). No hook is involved, nothing is cached; the subclass keeps the original class's
name, so reprs and summaries read as before, and it deep-copies and pickles (it is
rebuilt from the original class).

:func:`finalize` bakes the zeros in, restores the original state-dict keys and the
original class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, SupportsIndex, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from ..result import PruneResult

# Parents whose forward reads a descendant's weight without calling the descendant. A
# masked weight is computed on every read, so they see it current like any other reader.
DIRECT_READERS: tuple[type[nn.Module], ...] = (nn.MultiheadAttention, nn.TransformerEncoderLayer)

ORIG_SUFFIX = "_orig"
MASK_SUFFIX = "_mask"


class MaskedWeights(nn.Module):
    """Put in front of a masked module's class: ``<param>`` reads as ``_orig * _mask``.

    Never instantiated directly; :func:`masked_class` makes the per-class subclass.
    """

    _unmasked_class: type[nn.Module]

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__
        orig = state["_parameters"].get(name + ORIG_SUFFIX) if "_parameters" in state else None
        if orig is not None:
            mask = state["_buffers"].get(name + MASK_SUFFIX)
            if mask is not None:
                return orig * mask
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor) and is_masked(self, name):
            raise AttributeError(
                f"{name} of a masked {type(self).__name__} is computed as {name}_orig * "
                f"{name}_mask; write {name}_orig instead (or prunekit.finalize the model first)"
            )
        super().__setattr__(name, value)

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # The subclass is made at run time, so pickle cannot find it by name: rebuild the
        # module as its original class and put the subclass back (state as nn.Module keeps it).
        return (_new_masked, (type(self)._unmasked_class,), self.__getstate__())


_MASKED_CLASSES: dict[type[nn.Module], type[MaskedWeights]] = {}  # filled on first use


def masked_class(base: type[nn.Module]) -> type[MaskedWeights]:
    """The subclass of ``base`` that computes masked parameters on read (one per class)."""
    if issubclass(base, MaskedWeights):
        return base
    cls = _MASKED_CLASSES.get(base)
    if cls is None:
        namespace = {
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
            "__doc__": base.__doc__,
            "_unmasked_class": base,
        }
        cls = cast(type[MaskedWeights], type(base.__name__, (MaskedWeights, base), namespace))
        _MASKED_CLASSES[base] = cls
    return cls


def original_class(module: nn.Module) -> type[nn.Module]:
    """The class ``module`` has without masks (``nn.Linear`` for a masked ``nn.Linear``).

    Use it where code compares classes exactly (``type(a) is type(b)``).
    """
    cls = type(module)
    return cls._unmasked_class if issubclass(cls, MaskedWeights) else cls


def _new_masked(base: type[nn.Module]) -> nn.Module:
    """An empty instance of ``masked_class(base)`` (pickle then restores its state)."""
    module = base.__new__(base)
    module.__class__ = masked_class(base)
    return module


def is_masked(module: nn.Module, param: str = "weight") -> bool:
    """True if ``module.<param>`` carries a prunekit mask."""
    return isinstance(getattr(module, param + ORIG_SUFFIX, None), nn.Parameter) and hasattr(
        module, param + MASK_SUFFIX
    )


def masked_params(module: nn.Module) -> list[str]:
    """Names of the parameters of ``module`` that are masked (``["weight"]`` typically)."""
    if not isinstance(module, MaskedWeights):
        return []
    names = [n.removesuffix(ORIG_SUFFIX) for n in module._parameters if n.endswith(ORIG_SUFFIX)]
    return [n for n in names if n + MASK_SUFFIX in module._buffers]


def existing_mask(module: nn.Module, param: str = "weight") -> torch.Tensor | None:
    """The keep-mask (bool) on ``module.<param>``, or None if it is not masked."""
    if not is_masked(module, param):
        return None
    mask: torch.Tensor = getattr(module, param + MASK_SUFFIX)
    return mask.bool()


def effective_weight(module: nn.Module, param: str = "weight") -> torch.Tensor:
    """The weight the module computes with (``orig * mask`` if masked), detached."""
    with torch.no_grad():
        if is_masked(module, param):
            orig: torch.Tensor = getattr(module, param + ORIG_SUFFIX)
            return orig * getattr(module, param + MASK_SUFFIX)
        weight: torch.Tensor = getattr(module, param)
        return weight.detach()


def apply_mask(module: nn.Module, mask: torch.Tensor, param: str = "weight") -> None:
    """Mask ``module.<param>`` with ``mask`` (True = kept); an existing mask only shrinks.

    Args:
        module: the module that owns the parameter.
        mask: keep-mask, bool or 0/1 values; a bool mask on the parameter's device becomes
            the ``<param>_mask`` buffer itself (no copy). The buffer is bool: a quarter of
            a float mask's memory, and ``orig * mask`` stays in the parameter's dtype.
        param: the parameter's name.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> apply_mask(layer, torch.tensor([[True, False], [False, True]]))
        >>> sorted(name for name, _ in layer.named_parameters())
        ['bias', 'weight_orig']
        >>> int((layer.weight == 0).sum())
        2
    """
    if is_masked(module, param):
        buffer: torch.Tensor = getattr(module, param + MASK_SUFFIX)
        buffer.mul_(mask.to(device=buffer.device, dtype=buffer.dtype))
        return
    orig = module._parameters[param]
    assert isinstance(orig, nn.Parameter), f"{param} is not a parameter"
    module.__class__ = masked_class(type(module))
    _rename_parameter(module, param, param + ORIG_SUFFIX)
    module.register_buffer(param + MASK_SUFFIX, mask.to(device=orig.device, dtype=torch.bool))


def _rename_parameter(module: nn.Module, old: str, new: str) -> None:
    """Rename a registered parameter in place, keeping its position (state-dict order)."""
    items = [(new if name == old else name, p) for name, p in module._parameters.items()]
    module._parameters.clear()
    module._parameters.update(items)


def refresh_from_parents(model: nn.Module, module_name: str, param: str = "weight") -> None:
    """Nothing to do: a masked weight is computed on every read, by any module.

    Kept so that callers written for hook-refreshed masks keep working.
    """
    del model, module_name, param


def masked_modules(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """Every ``(module name, module, param)`` that currently carries a mask."""
    return [
        (name, module, param)
        for name, module in model.named_modules()
        for param in masked_params(module)
    ]


def unmask(module: nn.Module, param: str = "weight", *, bake: bool = True) -> None:
    """Remove one mask: the ``_orig`` Parameter becomes ``param`` again (same object).

    Once no parameter of ``module`` is masked, it is an instance of its original class again.

    Args:
        module: a module with ``<param>_orig`` and ``<param>_mask``.
        param: the masked parameter's name.
        bake: multiply the mask into the weight first (pruned weights become exactly 0);
            ``False`` restores the weight as it was before masking.
    """
    orig: nn.Parameter = getattr(module, param + ORIG_SUFFIX)
    mask: torch.Tensor = getattr(module, param + MASK_SUFFIX)
    if bake:
        with torch.no_grad():
            orig.mul_(mask)
    del module._buffers[param + MASK_SUFFIX]
    _rename_parameter(module, param + ORIG_SUFFIX, param)
    if isinstance(module, MaskedWeights) and not masked_params(module):
        plain: nn.Module = module
        plain.__class__ = module._unmasked_class


def finalize(model: nn.Module | PruneResult) -> nn.Module:
    """Bake every mask into its weight and remove the masks, in place.

    Afterwards ``model.state_dict()`` has the original keys, pruned weights are exactly
    zero, outputs are unchanged, each module is of its original class again and each
    weight is the same Parameter object that was trained as ``weight_orig``.

    Args:
        model: a module, or a :class:`~prunekit.PruneResult` (its ``.model`` is finalized).

    Returns:
        The finalized module (for chaining).

    Raises:
        SpecError: ``model`` is neither a module nor a result.

    Example:
        >>> import prunekit as pk, torch
        >>> m = torch.nn.Linear(4, 4)
        >>> _ = pk.prune(m, pk.Unstructured(sparsity=0.5), inplace=True)
        >>> sorted(pk.finalize(m).state_dict())
        ['bias', 'weight']
    """
    from ..result import model_of  # the result module imports this one

    module = model_of(model)
    for _, layer, param in masked_modules(module):
        unmask(layer, param)
    return module
