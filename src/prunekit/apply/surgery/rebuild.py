"""Rebuild a pruned architecture (shapes and attributes, no values) from a plan.

A loader builds the *original* model from its factory, calls
:func:`rebuild_pruned_architecture` with the saved plan, then loads the saved weights with
``load_state_dict(strict=True)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import PlanError
from ...plan import Plan
from .slicing import simple_attributes


def _split(name: str) -> tuple[str, str]:
    module_name, _, leaf = name.rpartition(".")
    return module_name, leaf


def _module(model: nn.Module, name: str, what: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise PlanError(
            f"the plan names {what} {name!r}, which the model does not have",
            "rebuild from the same architecture (factory and arguments) the plan was made on",
        ) from exc


def _check(model: nn.Module, plan: Plan) -> None:
    """Every name of the plan exists in the model (checked before any change)."""
    for name in plan.removed_modules:
        _module(model, name, "removed module")
    removed = tuple(plan.removed_modules)
    for name in plan.attributes:
        if not (removed and name.startswith(removed)):
            _module(model, name, "module")
    for name in plan.shapes:
        if removed and any(name.startswith(r + ".") for r in removed):
            continue
        module_name, leaf = _split(name)
        module = _module(model, module_name, "module")
        if not isinstance(getattr(module, leaf, None), torch.Tensor):
            raise PlanError(
                f"the plan gives a shape for {name!r}: no parameter or buffer of the model",
                "rebuild from the same architecture the plan was made on",
            )


def _remove_module(model: nn.Module, name: str) -> None:
    parent_name, child = _split(name)
    parent = model.get_submodule(parent_name)
    del parent._modules[child]


def _set_attribute(module: nn.Module, attr: str, value: Any) -> None:
    current = getattr(module, attr, None)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    setattr(module, attr, value)


def resize_tensor(module: nn.Module, leaf: str, shape: list[int]) -> None:
    """Give ``module.<leaf>`` (parameter or buffer) an uninitialised tensor of ``shape``."""
    tensor = getattr(module, leaf)
    if list(tensor.shape) == list(shape):
        return
    empty = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
    if isinstance(tensor, nn.Parameter):
        setattr(module, leaf, nn.Parameter(empty, requires_grad=tensor.requires_grad))
    else:
        module._buffers[leaf] = empty


def rebuild_pruned_architecture(model: nn.Module, plan: Plan) -> nn.Module:
    """Resize a freshly built original model to the pruned architecture, in place.

    Removes ``plan.removed_modules``, sets ``plan.attributes`` (``out_channels``,
    ``num_heads``, ...) and replaces every parameter / buffer whose shape differs from
    ``plan.shapes`` by an *uninitialised* tensor of the planned shape. Values are meant to be
    loaded afterwards with ``model.load_state_dict(state, strict=True)``.

    Args:
        model: the original (unpruned) architecture, e.g. built by the same factory.
        plan: a structured-pruning plan (``plan.shapes``, ``plan.attributes``,
            ``plan.removed_modules``).

    Returns:
        ``model`` itself, resized.

    Raises:
        PlanError: the plan names a module, parameter or buffer the model lacks (checked
            before anything is changed).

    Example:
        >>> import torch, prunekit as pk
        >>> from torch import nn
        >>> def make():
        ...     return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> res = pk.prune(make(), pk.Structured(sparsity=0.5), torch.randn(1, 4))
        >>> fresh = make()
        >>> rebuild_pruned_architecture(fresh, res.plan)[0].out_features
        4
    """
    _check(model, plan)
    for name in plan.removed_modules:
        _remove_module(model, name)
    for name, attrs in plan.attributes.items():
        module = model.get_submodule(name)
        for attr, value in attrs.items():
            _set_attribute(module, attr, value)
    for name, shape in plan.shapes.items():
        module_name, leaf = _split(name)
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            continue  # inside a removed module
        resize_tensor(module, leaf, shape)
    return model


def layout_plan(model: nn.Module) -> Plan:
    """The widths of ``model`` as a plan: every tensor's shape and the plain attributes
    (``out_channels``, ``num_features``, ...) of every module that holds tensors.

    What a loader needs to resize an original architecture to ``model`` when no pruning
    plan was kept (a physically pruned model saved on its own).

    Example:
        >>> from torch import nn
        >>> layout_plan(nn.Linear(3, 2)).attributes[""]["out_features"]
        2
    """
    holders = [(name, module) for name, module in model.named_modules()
               if module._parameters or module._buffers]
    return Plan(
        spec={},
        shapes={k: list(v.shape) for k, v in model.state_dict().items()
                if isinstance(v, torch.Tensor)},
        attributes={name: simple_attributes(module) for name, module in holders},
    )
