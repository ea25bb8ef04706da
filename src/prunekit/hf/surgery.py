"""Physical removal: cut weights, fix module attributes and the config, delete blocks.

Every function records what it changed (kept indices, attributes, removed modules) into a
:class:`Changes`, which becomes the plan.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .arch import Arch, Block, Slice
from .views import module_weight, sliced_dim, unit_indices


@dataclass
class Changes:
    """What surgery did, in plan form."""

    kept: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed_modules: list[str] = field(default_factory=list)

    def set_attr(self, obj: Any, path: str, name: str, value: Any) -> None:
        setattr(obj, name, value)
        self.attributes.setdefault(path, {})[name] = value


def _cut_param(module: nn.Module, name: str, dim: int, keep: list[int]) -> None:
    old = getattr(module, name)
    index = torch.tensor(keep, dtype=torch.long, device=old.device)
    new = nn.Parameter(old.detach().index_select(dim, index).clone(),
                       requires_grad=old.requires_grad)
    setattr(module, name, new)


def cut_module(
    model: nn.Module, path: str, cuts: dict[int, set[int]], transposed: bool, changes: Changes
) -> None:
    """Remove indices ``cuts[dim]`` from a Linear / Conv1D weight (and bias on its out dim)."""
    module = model.get_submodule(path)
    out_dim = 1 if transposed else 0
    for dim, removed in sorted(cuts.items()):
        width = module_weight(model, path).shape[dim]
        keep = [i for i in range(width) if i not in removed]
        _cut_param(module, "weight", dim, keep)
        changes.kept.setdefault(f"{path}.weight", {})[dim] = keep
        is_out = dim == out_dim
        if is_out and getattr(module, "bias", None) is not None:
            _cut_param(module, "bias", 0, keep)
            changes.kept.setdefault(f"{path}.bias", {})[0] = keep
        if transposed:
            changes.set_attr(module, path, "nf" if is_out else "nx", len(keep))
        else:
            changes.set_attr(module, path, "out_features" if is_out else "in_features", len(keep))


def block_cuts(
    block: Block, heads: list[int], kv_heads: list[int], neurons: list[int],
    widths: dict[str, list[int]],
) -> dict[tuple[str, bool], dict[int, set[int]]]:
    """Indices to remove per (module, transposed) and weight dim, in original coordinates.

    Args:
        block: the block's layout.
        heads: query heads to remove; kv_heads: key/value heads to remove.
        neurons: MLP neurons to remove.
        widths: ``{module: list(weight.shape)}`` for every module named by the block.
    """
    att = block.attention
    cuts: dict[tuple[str, bool], dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))

    def add(slc: Slice, units: list[int], size: int) -> None:
        if units:
            dim = sliced_dim(slc)
            width = widths[slc.module][dim]
            cuts[(slc.module, slc.transposed)][dim].update(unit_indices(slc, units, size, width))

    for slc in att.query:
        add(slc, heads, att.head_dim)
    for slc in att.kv:
        add(slc, kv_heads, att.head_dim)
    for slc in [*block.mlp.inputs, block.mlp.output]:
        add(slc, neurons, 1)
    return cuts


def head_attributes(family: str, heads_left: int, kv_left: int, head_dim: int) -> dict[str, int]:
    """Attributes of the attention module that depend on its head count."""
    if family == "bert":
        return {"num_attention_heads": heads_left, "all_head_size": heads_left * head_dim}
    if family == "gpt2":
        return {"num_heads": heads_left, "split_size": heads_left * head_dim}
    return {"num_key_value_groups": heads_left // kv_left}


def prune_block(
    model: nn.Module, arch: Arch, block: Block, heads: list[int], kv_heads: list[int],
    neurons: list[int], changes: Changes,
) -> None:
    """Remove heads and neurons from one block and update its modules' attributes."""
    names = {s.module for s in [*block.attention.query, *block.attention.kv,
                                *block.mlp.inputs, block.mlp.output]}
    widths = {n: list(module_weight(model, n).shape) for n in names}
    for (path, transposed), cuts in block_cuts(block, heads, kv_heads, neurons, widths).items():
        cut_module(model, path, cuts, transposed, changes)
    att = block.attention
    if heads:
        holder = model.get_submodule(att.holder)
        attrs = head_attributes(arch.family, att.num_heads - len(heads),
                                att.num_kv_heads - len(kv_heads), att.head_dim)
        for name, value in attrs.items():
            changes.set_attr(holder, att.holder, name, value)
    if neurons and block.mlp.holder is not None:
        holder = model.get_submodule(block.mlp.holder)
        changes.set_attr(holder, block.mlp.holder, "intermediate_size",
                         block.mlp.width - len(neurons))


def remove_blocks(model: nn.Module, arch: Arch, indices: list[int], changes: Changes) -> None:
    """Delete whole blocks (highest index first) and renumber ``layer_idx`` attributes."""
    blocks = model.get_submodule(arch.blocks_path)
    assert isinstance(blocks, nn.ModuleList)
    prefix = f"{arch.blocks_path}." if arch.blocks_path else ""
    for i in sorted(indices, reverse=True):
        del blocks[i]
        changes.removed_modules.append(f"{prefix}{i}")
    for j, block in enumerate(blocks):
        for name, sub in block.named_modules():
            if isinstance(getattr(sub, "layer_idx", None), int) and sub.layer_idx != j:
                path = f"{prefix}{j}" + (f".{name}" if name else "")
                changes.set_attr(sub, path, "layer_idx", j)


def update_config(config: Any, values: dict[str, Any], changes: Changes) -> None:
    """Set config fields (JSON values) and record them under ``attributes["config"]``."""
    if config is None:
        return
    for name, value in values.items():
        changes.set_attr(config, "config", name, value)
