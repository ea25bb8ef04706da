"""Physically remove channels: slice parameters and buffers, then fix module attributes.

:func:`kept_indices` turns a channel removal mask into kept indices per tensor dim and
:func:`sliced_tensors` computes the new data (both pure); :func:`install` puts it in place
and :func:`finish` fixes module attributes. Undoing a cut is the pipeline's snapshot's job
(:class:`prunekit.pipeline.ModelSnapshot`).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ...graph.groups import Member
from .handlers import sync_attributes

SIMPLE = (int, float, bool, str)


def kept_indices(members: list[Member], removed: torch.Tensor) -> dict[str, dict[int, list[int]]]:
    """``{tensor key: {dim: kept indices}}`` for every tensor dim that loses an index."""
    kept: dict[str, dict[int, list[int]]] = {}
    for member in members:
        chan = member.channel
        gone = torch.zeros(chan.numel(), dtype=torch.bool)
        valid = chan >= 0
        gone[valid] = removed[chan[valid]]
        if bool(gone.any()):
            kept.setdefault(member.key, {})[member.dim] = (~gone).nonzero().flatten().tolist()
    return kept


def _owner(model: nn.Module, key: str) -> tuple[nn.Module, str]:
    module_name, _, leaf = key.rpartition(".")
    return model.get_submodule(module_name), leaf


def simple_attributes(module: nn.Module) -> dict[str, Any]:
    """Int / float / bool / str / tuple-of-those attributes (the ones a loader can set)."""
    attrs = {}
    for name, value in vars(module).items():
        if name.startswith("_") or name == "training":
            continue
        if isinstance(value, SIMPLE) or (
            isinstance(value, (tuple, list)) and all(isinstance(v, SIMPLE) for v in value)
        ):
            attrs[name] = value
    return attrs


ITEM = re.compile(r"(?P<attr>\w+)\[(?P<index>\d+)\]")


def set_attribute(module: nn.Module, attr: str, value: int) -> None:
    """Set ``module.<attr>``; ``"shape[0]"`` sets one item of a tuple or list attribute."""
    item = ITEM.fullmatch(attr)
    if item is None:
        setattr(module, attr, value)
        return
    current = getattr(module, item["attr"])
    items = list(current)
    items[int(item["index"])] = value
    setattr(module, item["attr"], type(current)(items))


def touched_modules(kept: dict[str, Any], head_attrs: dict[str, dict[str, int]]) -> list[str]:
    names = {key.rpartition(".")[0] for key in kept} | set(head_attrs)
    return sorted(names)


def _set_tensor(module: nn.Module, leaf: str, data: torch.Tensor) -> None:
    current = getattr(module, leaf)
    if isinstance(current, nn.Parameter):
        current.data = data
    else:
        module._buffers[leaf] = data


def sliced_tensors(
    model: nn.Module, kept: dict[str, dict[int, list[int]]]
) -> dict[str, torch.Tensor]:
    """New data of every tensor that loses indices (the model is only read)."""
    new = {}
    for key, dims in kept.items():
        module, leaf = _owner(model, key)
        data = getattr(module, leaf).detach()
        for dim, index in dims.items():
            data = data.index_select(dim, torch.tensor(index, dtype=torch.long, device=data.device))
        new[key] = data.contiguous()
    return new


def install(model: nn.Module, new: dict[str, torch.Tensor]) -> None:
    """Put the sliced data into the model's own parameters and buffers (in place)."""
    for key, data in new.items():
        module, leaf = _owner(model, key)
        _set_tensor(module, leaf, data)


def finish(
    model: nn.Module, kept: dict[str, dict[int, list[int]]], head_attrs: dict[str, dict[str, int]]
) -> dict[str, dict[str, Any]]:
    """Sync module attributes to the sliced tensors and set head counts.

    Returns:
        ``{module name: {attribute: new value}}`` for every attribute that changed.
    """
    names = touched_modules(kept, head_attrs)
    before = {name: simple_attributes(model.get_submodule(name)) for name in names}
    for name in {key.rpartition(".")[0] for key in kept}:
        sync_attributes(model.get_submodule(name))
    for name, attrs in head_attrs.items():
        for attr, value in attrs.items():
            set_attribute(model.get_submodule(name), attr, value)
    changed: dict[str, dict[str, Any]] = {}
    for name in names:
        after = simple_attributes(model.get_submodule(name))
        diff = {a: v for a, v in after.items() if before[name].get(a) != v}
        if diff:
            changed[name] = {a: list(v) if isinstance(v, tuple) else v for a, v in diff.items()}
    return changed
