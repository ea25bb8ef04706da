"""Masks held through a training framework's loop and its checkpoints.

prunekit masks are computed on read (``weight = weight_orig * weight_mask``, see
:mod:`prunekit.apply.masks`), so a masked weight is zero in every forward whatever the
optimiser does. Two things a framework's loop needs on top:

- :func:`zero_behind_masks`, called after each optimiser step, writes zeros into the stored
  ``weight_orig`` entries the masks hide, so momentum or weight decay never leaves values
  behind a mask (the checkpoint then stores zeros there, and re-pruning ranks true zeros);
- :func:`masks_from_state_dict` (and :class:`MaskLoading`, which runs it whenever a state
  dict is loaded) puts the masks a checkpoint carries onto a freshly built, unmasked model
  before its weights are loaded, so ``load_state_dict`` finds ``weight_orig`` and
  ``weight_mask`` where the checkpoint has them and training resumes with the same masks.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..apply.masks import MASK_SUFFIX, ORIG_SUFFIX, apply_mask, is_masked, masked_modules

log = logging.getLogger(__name__)


def zero_behind_masks(model: nn.Module) -> None:
    """Set the stored values of every masked-out weight to zero, in place.

    Args:
        model: any model; modules without masks are left alone.
    """
    with torch.no_grad():
        for _, module, param in masked_modules(model):
            orig: torch.Tensor = getattr(module, param + ORIG_SUFFIX)
            mask: torch.Tensor = getattr(module, param + MASK_SUFFIX)
            orig.masked_fill_(mask.logical_not(), 0.0)


def mask_sparsity(model: nn.Module) -> float:
    """The fraction of masked-out entries over every masked weight of ``model`` (0 if none).

    Args:
        model: any model.

    Returns:
        Masked-out entries divided by the entries of all masked weights.
    """
    total = removed = 0
    for _, module, param in masked_modules(model):
        mask: torch.Tensor = getattr(module, param + MASK_SUFFIX)
        total += mask.numel()
        removed += int(mask.numel() - int(mask.count_nonzero()))
    return removed / total if total else 0.0


def masks_from_state_dict(
    model: nn.Module, state_dict: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """Mask each weight of ``model`` that ``state_dict`` stores masked and ``model`` does not.

    A key pair ``<module>.<param>_orig`` / ``<module>.<param>_mask`` marks a masked weight;
    the module gets that mask (its values are then overwritten by loading the state dict
    as usual). Weights already masked, keys naming no module of ``model``, and masks whose
    shape differs from the weight are left for ``load_state_dict`` to report.

    Args:
        model: the model about to load ``state_dict``.
        state_dict: a state dict saved from a masked model (a Lightning checkpoint's
            ``"state_dict"``, a ``Trainer`` checkpoint's weights).
        prefix: the part of each key before ``model``'s own names.

    Returns:
        The names (``module.param``) that were masked.

    Example:
        >>> dense = torch.nn.Sequential(torch.nn.Linear(4, 4))
        >>> state = {"0.weight_orig": torch.ones(4, 4), "0.weight_mask": torch.eye(4) > 0,
        ...          "0.bias": torch.zeros(4)}
        >>> masks_from_state_dict(dense, state)
        ['0.weight']
        >>> _ = dense.load_state_dict(state)
        >>> int(dense[0].weight.count_nonzero())
        4
    """
    masked = []
    for key, mask in state_dict.items():
        if not (key.startswith(prefix) and key.endswith(MASK_SUFFIX)):
            continue
        stem = key[len(prefix):].removesuffix(MASK_SUFFIX)
        if prefix + stem + ORIG_SUFFIX not in state_dict:
            continue
        module_name, _, param = stem.rpartition(".")
        module = _submodule(model, module_name)
        if module is None or is_masked(module, param):
            continue
        weight = module._parameters.get(param)
        if not isinstance(weight, nn.Parameter) or tuple(weight.shape) != tuple(mask.shape):
            continue
        apply_mask(module, mask.to(device=weight.device, dtype=torch.bool), param)
        masked.append(stem)
    if masked:
        log.info("masked %d weights as the loaded state dict stores them: %s", len(masked),
                 ", ".join(masked))
    return masked


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _mask_before_loading(
    module: nn.Module, state_dict: Mapping[str, Any], prefix: str, *args: Any
) -> None:
    """``load_state_dict`` pre-hook: :func:`masks_from_state_dict` on the whole state dict."""
    del args
    masks_from_state_dict(module, state_dict, prefix)


class MaskLoading:
    """Keeps a ``load_state_dict`` pre-hook on one model that masks its weights the way the
    loaded state dict stores them (:func:`masks_from_state_dict`) before they are loaded.

    :meth:`attach` to the model before a framework restores a checkpoint into it, and
    :meth:`detach` when training is over. Attaching to the same model again does nothing,
    so the hook is never stacked; the model is held by a weak reference.
    """

    def __init__(self) -> None:
        self._handle: RemovableHandle | None = None
        self._model: weakref.ref[nn.Module] | None = None

    @property
    def attached(self) -> bool:
        """Whether the hook is on a live model."""
        return self._handle is not None and self._model is not None and (
            self._model() is not None)

    def attach(self, model: nn.Module) -> None:
        """Put the hook on ``model`` (moving it from any other model).

        Args:
            model: the model checkpoints will be loaded into.
        """
        if self.attached and self._model is not None and self._model() is model:
            return
        self.detach()
        self._handle = model.register_load_state_dict_pre_hook(_mask_before_loading)
        self._model = weakref.ref(model)

    def detach(self) -> None:
        """Remove the hook (nothing happens if it is not attached)."""
        if self._handle is not None:
            self._handle.remove()
        self._handle = None
        self._model = None
