"""Undo any mutation of a model: module tree, attributes, parameters, buffers, config.

:class:`ModelSnapshot` records, for every module, its class and attribute dictionary (the
torch containers ``_parameters`` / ``_buffers`` / ``_modules`` / hooks, and a deep copy of
every other attribute, e.g. a Hugging Face config) and, for every tensor, the storage it
points to.
:meth:`ModelSnapshot.restore` puts all of it back *in place*: the user's module, Parameter,
container and config objects keep their identity, so references the user holds stay valid.

Tensors are not cloned unless a pipeline says it writes into their storage (``writes``):
surgery that assigns new tensors is undone by pointing each Parameter back at its old
storage. An undeclared in-place write is detected through the tensor's version counter and
reported, never silently left behind.
"""

from __future__ import annotations

import copy
import functools
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import BUG_HINT, InternalError

IMMUTABLE = (int, float, bool, str, bytes, type(None), tuple, frozenset, torch.dtype, torch.device)
BY_REFERENCE = (
    type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType,
    functools.partial,
)


@dataclass
class _TensorState:
    tensor: torch.Tensor  # the Parameter or buffer object itself
    storage: torch.Tensor  # a detached alias of its data
    version: int
    requires_grad: bool
    grad: torch.Tensor | None
    clone: torch.Tensor | None  # values, for tensors written in place


@dataclass
class _ModuleState:
    module: nn.Module
    cls: type  # masking swaps in a subclass that computes masked weights on read
    attributes: dict[str, Any]  # name -> the original object
    contents: dict[str, Any]  # name -> a copy of what a mutable object held


def _keep_identity(model: nn.Module) -> dict[int, Any]:
    """A deepcopy memo that maps every module and tensor of ``model`` to itself."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        memo[id(module)] = module
        tensors = [*module._parameters.values(), *module._buffers.values(), *vars(module).values()]
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                memo[id(tensor)] = tensor
    return memo


def _is_torch_container(name: str, value: Any) -> bool:
    """``_parameters``, ``_buffers``, ``_modules`` and the hook dictionaries: copied shallow."""
    return name.startswith("_") and isinstance(value, (dict, set, list))


def _snapshot_value(name: str, value: Any, memo: dict[int, Any]) -> Any:
    """A copy of what a mutable attribute holds, or None to keep it by reference only."""
    if isinstance(value, (torch.Tensor, nn.Module, *IMMUTABLE, *BY_REFERENCE)):
        return None
    if _is_torch_container(name, value):
        return copy.copy(value)
    held = value if isinstance(value, (dict, list, set)) else getattr(value, "__dict__", None)
    if held is None:
        return None  # e.g. __slots__ objects: rarely mutated by pruning
    try:
        return copy.deepcopy(held, memo)
    except Exception:  # noqa: BLE001 - an object that refuses copying stays by reference
        return None


def _address(tensor: torch.Tensor) -> int | None:
    try:
        return tensor.data_ptr()
    except RuntimeError:  # sparse layouts have no single storage
        return None


def _put_back(original: Any, held: Any) -> None:
    """Make ``original`` hold ``held`` again, keeping its identity."""
    target = original if isinstance(original, (dict, list, set)) else vars(original)
    if isinstance(target, list):
        target[:] = held
    else:
        target.clear()
        target.update(held)


class ModelSnapshot:
    """Everything needed to put ``model`` back exactly as it was.

    Args:
        model: the model about to be mutated in place.
        writes: names of modules whose own parameters and buffers may be written in place
            (``tensor.copy_``, ``mul_``); their values are cloned. Other tensors are only
            referenced.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> snap = ModelSnapshot(layer, writes=[""])
        >>> with torch.no_grad():
        ...     _ = layer.weight.mul_(0)
        >>> layer.out_features = 7
        >>> snap.restore()
        >>> layer.out_features, bool(layer.weight.abs().sum() > 0)
        (2, True)
    """

    def __init__(self, model: nn.Module, writes: Iterable[str] = ()) -> None:
        self._identity = _keep_identity(model)
        memo = dict(self._identity)
        written = {id(model.get_submodule(name)) for name in writes}
        self._modules = [self._module_state(m, memo) for m in model.modules()]
        self._tensors: dict[int, _TensorState] = {}
        for module in model.modules():
            for tensors in (module._parameters, module._buffers):
                for tensor in tensors.values():
                    if tensor is not None and id(tensor) not in self._tensors:
                        self._tensors[id(tensor)] = self._tensor_state(
                            tensor, id(module) in written
                        )

    def _module_state(self, module: nn.Module, memo: dict[int, Any]) -> _ModuleState:
        attributes = dict(vars(module))
        contents = {}
        for name, value in attributes.items():
            held = _snapshot_value(name, value, memo)
            if held is not None:
                contents[name] = held
        return _ModuleState(module, type(module), attributes, contents)

    @staticmethod
    def _tensor_state(tensor: torch.Tensor, written: bool) -> _TensorState:
        storage = tensor.detach()
        return _TensorState(
            tensor, storage, storage._version, tensor.requires_grad, tensor.grad,
            storage.clone() if written else None,
        )

    def restore(self) -> None:
        """Put every module, attribute and tensor back; callable more than once.

        Raises:
            InternalError: a tensor that was not declared in ``writes`` was written in
                place, so its old values are lost (a prunekit bug).
        """
        memo = dict(self._identity)  # shared objects (a config) are restored once, shared
        for state in self._modules:
            if type(state.module) is not state.cls:
                state.module.__class__ = state.cls
            attributes = vars(state.module)
            attributes.clear()
            attributes.update(state.attributes)
            for name, held in state.contents.items():
                shallow = _is_torch_container(name, state.attributes[name])
                _put_back(state.attributes[name], held if shallow else copy.deepcopy(held, memo))
        lost = [self._restore_tensor(state) for state in self._tensors.values()]
        if any(lost):
            raise InternalError(
                "could not restore the model: tensors were written in place without a copy "
                f"({sum(lost)} of them)",
                BUG_HINT,
            )

    @staticmethod
    def _restore_tensor(state: _TensorState) -> bool:
        """Restore one tensor; True if its values were lost."""
        tensor = state.tensor
        same_storage = _address(tensor) == _address(state.storage)
        tensor.data = state.storage
        # The version counter is shared with whatever data the tensor was given since, so
        # only a tensor still on its own storage tells an in-place write for certain.
        if state.clone is not None:
            with torch.no_grad():
                state.storage.copy_(state.clone)
        elif same_storage and state.storage._version != state.version:
            return True
        tensor.requires_grad_(state.requires_grad)
        tensor.grad = state.grad
        return False
