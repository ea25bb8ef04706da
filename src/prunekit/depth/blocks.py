"""Which modules of a model are removable residual blocks, and why the others are not.

A block is removable when it is held in an ``nn.Sequential`` (so the model runs on without
it and a loader can rebuild the model by dropping it), runs exactly once on the example
inputs, takes one tensor and returns a tensor of the same shape and dtype, and its forward
computes ``input + f(input)`` (:func:`.residual.residual_reason`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import TargetError
from ..inputs import ExampleInputs, model_outputs
from ..targets import IgnoreEntry, matches
from .residual import residual_reason


@dataclass
class _Call:
    count: int = 0
    reason: str | None = None


@dataclass
class Candidates:
    """The removable blocks of a model, in the order the forward runs them.

    Attributes:
        names: removable blocks, outermost only (a removable block inside another is left out).
        reasons: ``{module name: why it is not removable}`` for every other module that ran.
    """

    names: list[str]
    reasons: dict[str, str] = field(default_factory=dict)


def _call_reason(args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> str | None:
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return "it is called with other arguments than one tensor"
    if not isinstance(output, torch.Tensor):
        return "it does not return a single tensor"
    x = args[0]
    if output.shape != x.shape or output.dtype != x.dtype:
        return (f"its output ({tuple(output.shape)}, {output.dtype}) differs from its input "
                f"({tuple(x.shape)}, {x.dtype})")
    return None


@contextlib.contextmanager
def _recording(model: nn.Module) -> Iterator[dict[str, _Call]]:
    """Per submodule (in call order): how often it ran, and why its call cannot be skipped."""
    calls: dict[str, _Call] = {}

    def hook(name: str) -> Any:
        def record(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                   output: Any) -> None:
            call = calls.setdefault(name, _Call())
            call.count += 1
            call.reason = call.reason or _call_reason(args, kwargs, output)
        return record

    handles = [module.register_forward_hook(hook(name), with_kwargs=True)
               for name, module in model.named_modules() if name]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _parent(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name.rpartition(".")[0])


def block_reason(model: nn.Module, name: str, call: Any = None) -> str | None:
    """Why the module ``name`` is not a removable block, or None (its call not checked
    when ``call`` is None)."""
    module = model.get_submodule(name)
    if isinstance(module, nn.Identity):
        return "it is already nn.Identity (removed)"
    if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return "it is a container, not a block"
    if type(module).__module__.startswith("torch.nn."):
        return f"it is a single {type(module).__name__} layer, not a block"
    if not name or not isinstance(_parent(model, name), nn.Sequential):
        return "it is not held in an nn.Sequential"
    if call is not None:
        if call.count != 1:
            return f"it runs {call.count} times per forward pass"
        if call.reason is not None:
            return str(call.reason)
    return residual_reason(module)


def _ignored(name: str, modules: dict[str, nn.Module], entries: list[IgnoreEntry]) -> bool:
    """True if an ignore entry selects the module ``name`` or a module inside it."""
    if not entries:
        return False
    inside = [(n, m) for n, m in modules.items() if n == name or n.startswith(name + ".")]
    return any(matches(e, n, m) for e in entries for n, m in inside)


def find_blocks(model: nn.Module, example_inputs: ExampleInputs,
                ignore: Iterable[IgnoreEntry] = ()) -> Candidates:
    """The removable residual blocks of ``model`` on ``example_inputs``.

    Args:
        model: the model (run once in eval mode without gradients; not changed).
        example_inputs: inputs it accepts.
        ignore: entries (as in :func:`prunekit.prune`): a block they select, or that holds
            a module they select, is not removable.

    Returns:
        The :class:`Candidates`.
    """
    with _recording(model) as calls:
        model_outputs(model, example_inputs)
    entries = list(ignore)
    modules = dict(model.named_modules())
    names: list[str] = []
    reasons: dict[str, str] = {}
    for name in sorted(calls, key=lambda n: n.count(".")):  # outer blocks first
        outer = next((o for o in names if name.startswith(o + ".")), None)
        if outer is not None:
            reasons[name] = f"it lies inside the removable block {outer!r}"
            continue
        reason = "ignored" if _ignored(name, modules, entries) else block_reason(
            model, name, calls[name])
        if reason is None:
            names.append(name)
        else:
            reasons[name] = reason
    order = list(calls)  # forward hooks fire as calls finish: siblings in forward order
    names.sort(key=order.index)
    return Candidates(names, reasons)


def check_named(model: nn.Module, names: Iterable[str], candidates: Candidates) -> list[str]:
    """The user's block names, each checked to be a removable block.

    Raises:
        TargetError: naming every name that is not a module, or not a removable block (and
            why), before anything is changed.
    """
    modules = dict(model.named_modules())
    problems = []
    for name in names:
        if name not in modules:
            problems.append(f"{name!r} is not a module of the model")
        elif name not in candidates.names:
            why = candidates.reasons.get(name, "its forward did not run on the example inputs")
            problems.append(f"{name!r} is not a removable residual block: {why}")
    if problems:
        raise TargetError(
            "; ".join(problems),
            "name blocks whose output is their input plus a branch, held in an nn.Sequential"
            f"; removable here: {', '.join(candidates.names) or 'none'}",
        )
    return list(names)
