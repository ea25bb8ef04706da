"""Coupling rules for ops that only move elements: view, permute, cat, split, getitem, pad...

The op is re-run on the atom maps themselves (as int64 tensors of the real shape), so concat
offsets, chunk/split, flatten-into-Linear and channel-shuffle permutations come out exact.

A view that splits a channel dim into several dims (heads, shuffle groups) constrains the
kept set: after pruning the same view must still be valid. One factor stays prunable and
the slices along the other factors are united: the factor matching a ``num_heads``-like
attribute of the running module (whole heads are removed and the attribute is updated),
else the innermost factor (every group keeps the same positions, as channel shuffle needs).
"""

from __future__ import annotations

from typing import Any

import torch

from .state import HeadRule, TraceState, rows, varies
from .unionfind import NO_ATOM

LAYOUT = {
    "view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "swapaxes",
    "swapdims", "movedim", "moveaxis", "unsqueeze", "squeeze", "expand", "expand_as",
    "repeat", "getitem", "narrow", "select", "roll", "flip", "cat", "concat", "concatenate",
    "stack", "split", "split_with_sizes", "chunk", "unbind", "tensor_split", "pad", "view_as",
    "reshape_as", "tile", "repeat_interleave", "index_select", "channel_shuffle",
    "pixel_shuffle", "pixel_unshuffle", "hstack", "vstack",
}
SPLITTING = {"view", "reshape", "unflatten", "view_as", "reshape_as"}
PARTS = {"split", "split_with_sizes", "chunk", "unbind", "tensor_split"}
SLICING = {"getitem", "narrow", "select", "index_select"}
HEAD_ATTRS = ("num_heads", "n_heads", "num_attention_heads", "n_head", "heads", "nhead")


def _as_map(state: TraceState, value: Any) -> Any:
    """Replace every floating tensor by its full-size atom map (NO_ATOM where none), and
    bring every other tensor (indices, boolean masks, repeats) to the CPU, where the maps
    live whatever the model's device."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            return value.cpu()
        amap = state.map_of(value)
        if amap is None:
            return torch.full(value.shape, NO_ATOM, dtype=torch.long)
        return amap.expand(value.shape)
    if isinstance(value, (list, tuple)):
        return type(value)(_as_map(state, v) for v in value)
    return value


def _host_indices(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments with their tensors that are not floating (an ``index=``) on the
    CPU, next to the maps; floating ones stay as they are."""
    return {k: v.cpu() if isinstance(v, torch.Tensor) and not v.is_floating_point() else v
            for k, v in kwargs.items()}


def _run_on_maps(name: str, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    if name in ("view", "view_as"):
        args = (args[0].contiguous(), *args[1:])
    if name == "pad":
        mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
        if mode == "constant":
            kwargs = {**kwargs, "value": NO_ATOM}
            args = args[:3]
            return func(*args, **kwargs)
        return func(args[0].double(), *args[1:], **kwargs).long()
    return func(*args, **kwargs)


def layout(
    state: TraceState, name: str, func: Any, args: Any, kwargs: dict[str, Any], out: Any
) -> None:
    """Re-run the op on the atom maps and attach the results to the outputs."""
    inputs = [a for a in _flat(args) if isinstance(a, torch.Tensor) and a.is_floating_point()]
    if not any(state.map_of(t) is not None for t in inputs):
        return
    result = _run_on_maps(name, func, _as_map(state, args), _host_indices(kwargs))
    outs, maps = _flat(out), _flat(result)
    for tensor, amap in zip(outs, maps, strict=False):
        if isinstance(tensor, torch.Tensor) and isinstance(amap, torch.Tensor):
            state.set_map(tensor, amap if tensor.is_floating_point() else None)
    source = state.map_of(args[0]) if isinstance(args[0], torch.Tensor) else None
    if source is None:
        return
    if name in SPLITTING and isinstance(out, torch.Tensor):
        _constrain_splits(state, source.expand(args[0].shape), tuple(out.shape))
        _shape_attributes(state, out)
    elif name in PARTS:
        _constrain_parts(state, source, args, kwargs, name)
    elif name in SLICING:
        _constrain_slice(state, source, args[0], out)


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [item for v in value for item in _flat(v)]
    return [value]


def _dim_groups(src: tuple[int, ...], dst: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """Pair runs of source dims with runs of target dims of equal product."""
    groups, i, j = [], 0, 0
    while i < len(src) or j < len(dst):
        gi, gj = [i] if i < len(src) else [], [j] if j < len(dst) else []
        pi = src[i] if i < len(src) else 1
        pj = dst[j] if j < len(dst) else 1
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj and i < len(src):
                pi *= src[i]
                gi.append(i)
                i += 1
            elif j < len(dst):
                pj *= dst[j]
                gj.append(j)
                j += 1
            else:
                return []
        groups.append((gi, gj))
    return groups


def _constrain_splits(state: TraceState, source: torch.Tensor, shape: tuple[int, ...]) -> None:
    for src_dims, dst_dims in _dim_groups(tuple(source.shape), shape):
        big = [d for d in src_dims if source.size(d) > 1]
        factors = [shape[d] for d in dst_dims if shape[d] > 1]
        if len(big) != 1 or len(factors) < 2 or not varies(source, big[0]):
            continue
        dim = big[0]
        size = source.size(dim)
        vector = source.movedim(dim, -1).reshape(-1, size).unique(dim=0)
        _unite_split(state, vector, factors)


def _head_factor(state: TraceState, factors: list[int]) -> tuple[int, str] | None:
    if not state.stack:
        return None
    module = state.stack[-1][1]
    for attr in HEAD_ATTRS:
        value = getattr(module, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value in factors[:-1]:
            last = max(i for i, f in enumerate(factors[:-1]) if f == value)
            return last, attr
    return None


def _unite_split(state: TraceState, vector: torch.Tensor, factors: list[int]) -> None:
    """Unite the slices that must be kept or removed together after a dim split."""
    head = _head_factor(state, factors)
    keep = head[0] if head else len(factors) - 1
    for row in vector:
        if not bool((row >= 0).any()):
            continue  # padding (no channel at all): no constraint, no head count
        grid = row.view(factors).movedim(keep, 0).reshape(factors[keep], -1)  # (kept factor, rest)
        state.unite(grid[:, :1].expand_as(grid), grid)
        if head:
            state.heads.append(HeadRule(state.stack[-1][0], head[1], grid[:, 0].clone()))


def _part_dim(name: str, args: Any, kwargs: dict[str, Any]) -> int:
    if name == "unbind":
        return int(kwargs.get("dim", args[1] if len(args) > 1 else 0))
    return int(kwargs.get("dim", args[2] if len(args) > 2 else 0))


def _constrain_parts(
    state: TraceState, source: torch.Tensor, args: Any, kwargs: dict[str, Any], name: str
) -> None:
    """Parts of a channel dim must keep equal positions (sizes are recomputed after pruning),
    unless the split sizes are a list attribute of the running module: then each part
    keeps its own channels and the list is updated (see :func:`_width_rules`)."""
    tensor = args[0]
    dim = _part_dim(name, args, kwargs) % tensor.dim()
    if not varies(source, dim):
        return
    size = tensor.size(dim)
    sizes: Any = None
    if name == "unbind":
        pieces = size
    elif name == "chunk":
        pieces = int(args[1]) if len(args) > 1 else int(kwargs["chunks"])
    else:
        sizes = args[1] if len(args) > 1 else kwargs.get("split_size_or_sections")
        if isinstance(sizes, int):
            pieces = size // sizes if size % sizes == 0 else 0
        elif len(set(sizes)) == 1:
            pieces = len(sizes)
        elif _split_by_attribute(state, source, tensor, dim, list(sizes)):
            return
        else:
            pieces = 0
    if pieces < 1 or size % pieces:
        state.freeze(source)
        return
    grid = source.expand(tensor.shape).movedim(dim, -1)
    grid = grid.reshape(-1, pieces, size // pieces)  # (rows, part, position)
    state.unite(grid[:, :1].expand_as(grid), grid)
    if isinstance(sizes, int):
        _split_size_attributes(state, source, tensor, dim, sizes)
    elif sizes is not None:
        _split_list_attributes(state, source, tensor, dim, list(sizes))


# Width-like attribute names: a module keeping a channel count it later passes to a split or
# a view (timm's ``expand_chs``, ``width``, ``in_channels``, ``splits``, ``shape``).
WIDTH_WORDS = ("chs", "channels", "dim", "width", "features", "split", "shape", "hidden",
               "planes")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _width_attributes(state: TraceState) -> list[tuple[str, Any]]:
    """Int, int-tuple and int-list attributes of the running module named like a width."""
    if not state.stack:
        return []
    found = []
    for attr, value in vars(state.stack[-1][1]).items():
        if attr.startswith("_") or not any(word in attr.lower() for word in WIDTH_WORDS):
            continue
        if _is_int(value) or (isinstance(value, (tuple, list)) and value
                              and all(_is_int(v) for v in value)):
            found.append((attr, value))
    return found


def _single_row(source: torch.Tensor, tensor: torch.Tensor, dim: int) -> torch.Tensor | None:
    """The atoms along ``dim`` when every other position holds the same ones, else None."""
    distinct = rows(source.expand(tensor.shape), dim, tensor.size(dim))
    distinct = distinct[(distinct >= 0).any(1)]  # padding rows hold no channel
    return distinct[0] if distinct.size(0) == 1 else None


def _width_rule(state: TraceState, attr: str, atoms: torch.Tensor) -> None:
    """The attribute's new value is the number of indices of ``atoms`` kept after pruning."""
    state.heads.append(HeadRule(state.stack[-1][0], attr, atoms.clone(), width=True))


def _split_size_attributes(
    state: TraceState, source: torch.Tensor, tensor: torch.Tensor, dim: int, part: int
) -> None:
    """``x.split(self.width)`` / ``x.split(self.expand_chs // 2)``: an int attribute equal to
    the part size or to the whole width follows the pruned width."""
    row = _single_row(source, tensor, dim)
    if row is None:
        return
    for attr, value in _width_attributes(state):
        if _is_int(value) and value in (part, row.numel()) and part != row.numel():
            _width_rule(state, attr, row[:value])


def _split_list_attributes(
    state: TraceState, source: torch.Tensor, tensor: torch.Tensor, dim: int, sizes: list[int]
) -> bool:
    """``torch.split(x, self.splits)``: every item of a list attribute equal to the split
    sizes gets its part's kept count. Returns False when no attribute holds ``sizes`` or the
    parts are not the same along the other dims (nothing recorded)."""
    attrs = [attr for attr, value in _width_attributes(state)
             if isinstance(value, list) and value == sizes]
    row = _single_row(source, tensor, dim) if attrs else None
    if row is None:
        return False
    bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    for attr in attrs:
        for i in range(len(sizes)):
            _width_rule(state, f"{attr}[{i}]", row[bounds[i]:bounds[i + 1]])
    return True


def _split_by_attribute(
    state: TraceState, source: torch.Tensor, tensor: torch.Tensor, dim: int, sizes: list[int]
) -> bool:
    """Unequal parts whose sizes a list attribute holds (timm's ``MixedConv2d.splits``) are
    pruned each on its own; the first channel of every part is kept, so no part (and no
    layer reading it) ends up empty."""
    if not _split_list_attributes(state, source, tensor, dim, sizes):
        return False
    grid = source.expand(tensor.shape).movedim(dim, -1)
    for start in [sum(sizes[:i]) for i in range(len(sizes))]:
        state.freeze(grid[..., start])
    return True


def _shape_attributes(state: TraceState, out: torch.Tensor) -> None:
    """``w.view(self.shape)``: a shape attribute equal to the view's shape follows the pruned
    width at every dim holding channels; ``x.reshape(B, N, self.attn_dim)`` (timm's
    attention merging its heads): an int attribute equal to the size of a dim holding
    channels follows that dim's pruned width (head counts have their own rule, and a
    per-head size never changes: heads are removed whole)."""
    amap = state.peek(out)
    if amap is None:
        return
    shape = list(out.shape)
    rows_at = {d: _single_row(amap, out, d) for d in range(out.dim()) if varies(amap, d)}
    for attr, value in _width_attributes(state):
        if isinstance(value, (tuple, list)) and list(value) == shape:
            for d, row in rows_at.items():
                if row is not None:
                    _width_rule(state, f"{attr}[{d}]", row)
        elif _is_int(value) and "head" not in attr and attr not in HEAD_ATTRS:
            matching = [row for d, row in rows_at.items() if shape[d] == value]
            if len(matching) == 1 and matching[0] is not None:
                _width_rule(state, attr, matching[0])


def _constrain_slice(
    state: TraceState, source: torch.Tensor, tensor: torch.Tensor, out: Any
) -> None:
    """Taking part of the channels by fixed bounds cannot follow pruning: pin them."""
    if not isinstance(out, torch.Tensor):
        return
    result = state.map_of(out)
    before = source[source >= 0].unique()
    after = result[result >= 0].unique() if result is not None else before[:0]
    if after.numel() < before.numel():
        state.freeze(source)
