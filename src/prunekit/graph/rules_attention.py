"""Coupling rules for attention: matmul / bmm, scaled_dot_product_attention, and
``nn.MultiheadAttention`` (its packed projection ties heads to the embedding width, so its
dims are left unpruned).

A matrix product ``a (.., I, K) @ b (.., K, J)`` unites the atoms of a's and b's contracted
dim; its output rows take a's atoms (if constant along K) and columns b's (if constant
along K). With whole heads united by the head-split rule, ``q @ k^T`` then ``@ v`` ties the
heads of q, k and v together.
"""

from __future__ import annotations

from typing import Any

import torch

from .state import TraceState, varies


def _side(state: TraceState, amap: torch.Tensor, other: int) -> torch.Tensor | None:
    """Atoms along the contracted dim, if they do not change along the other matrix dim."""
    if varies(amap, other):
        state.freeze(amap)
        return None
    return amap.select(other, 0)  # (.., K)


def _contract(state: TraceState, a: torch.Tensor | None, b: torch.Tensor | None) -> None:
    """Unite a[.., k] with b[.., k]; a side with atoms along K facing none is pinned."""
    if a is not None and b is not None:
        ndim = max(a.dim(), b.dim())
        a = a.view((1,) * (ndim - a.dim()) + tuple(a.shape))
        b = b.view((1,) * (ndim - b.dim()) + tuple(b.shape))
        state.atoms.union(*torch.broadcast_tensors(a, b))
        return
    for side in (a, b):
        if side is not None and varies(side, side.dim() - 1):
            state.freeze(side)


def _combine(state: TraceState, rows: torch.Tensor | None, cols: torch.Tensor | None) -> Any:
    if rows is None and cols is None:
        return None
    if rows is None:
        return cols
    if cols is None:
        return rows
    ndim = max(rows.dim(), cols.dim())
    rows = rows.view((1,) * (ndim - rows.dim()) + tuple(rows.shape))
    cols = cols.view((1,) * (ndim - cols.dim()) + tuple(cols.shape))
    rows, cols = torch.broadcast_tensors(rows, cols)
    state.atoms.union(rows, cols)
    return torch.where(rows >= 0, rows, cols)


def matmul(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``a @ b`` for operands of 2 or more dims."""
    a, b = args[0], args[1]
    amap = state.map_of(a) if isinstance(a, torch.Tensor) else None
    bmap = state.map_of(b) if isinstance(b, torch.Tensor) else None
    if amap is None and bmap is None:
        return
    if a.dim() < 2 or b.dim() < 2:
        raise state.unsupported("a matrix-vector product")
    state.set_map(out, matmul_maps(state, amap, bmap))


def matmul_maps(
    state: TraceState, amap: torch.Tensor | None, bmap: torch.Tensor | None
) -> torch.Tensor | None:
    """Couple ``a @ b`` given the operands' maps; return the output's map."""
    ak = _side(state, amap, -2) if amap is not None else None
    bk = _side(state, bmap, -1) if bmap is not None else None
    _contract(state, ak, bk)
    amap = state.atoms.find(amap) if amap is not None else None
    bmap = state.atoms.find(bmap) if bmap is not None else None
    rows = amap.select(-1, 0).unsqueeze(-1) if amap is not None and not varies(amap, -1) else None
    cols = bmap.select(-2, 0).unsqueeze(-2) if bmap is not None and not varies(bmap, -2) else None
    result: torch.Tensor | None = _combine(state, rows, cols)
    return result


def einsum(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Two-operand einsum without repeated letters, rewritten as a batched matmul."""
    equation, operands = args[0], args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    maps = [state.map_of(t) for t in operands]
    if all(m is None for m in maps):
        return
    spec = equation.replace(" ", "")
    if len(operands) != 2 or "->" not in spec or "." in spec:
        raise state.unsupported(f"einsum {equation!r}")
    lhs, result = spec.split("->")
    sa, sb = lhs.split(",")
    if len(set(sa)) != len(sa) or len(set(sb)) != len(sb) or (set(sa) ^ set(sb)) - set(result):
        raise state.unsupported(f"einsum {equation!r}")
    a, b = operands
    batch = [c for c in result if c in sa and c in sb]
    left = [c for c in result if c in sa and c not in sb]
    right = [c for c in result if c in sb and c not in sa]
    contracted = [c for c in sa if c in sb and c not in result]
    size = {**dict(zip(sa, a.shape, strict=True)), **dict(zip(sb, b.shape, strict=True))}
    amat = _as_matrix(maps[0], a, sa, batch, left, contracted, size)
    bmat = _as_matrix(maps[1], b, sb, batch, contracted, right, size)
    out_map = matmul_maps(state, amat, bmat)
    if out_map is None:
        return
    order = batch + left + right
    full = out_map.expand(amat.shape[0] if amat is not None else bmat.shape[0],  # type: ignore[union-attr]
                          _prod(left, size), _prod(right, size))
    shaped = full.reshape([size[c] for c in order])
    state.set_map(out, shaped.permute([order.index(c) for c in result]))


def _prod(letters: list[str], size: dict[str, int]) -> int:
    total = 1
    for c in letters:
        total *= size[c]
    return total


def _as_matrix(amap: torch.Tensor | None, tensor: torch.Tensor, letters: str, batch: list[str],
               rows: list[str], cols: list[str], size: dict[str, int]) -> torch.Tensor | None:
    """Permute and reshape an operand's map to ``(batch, rows, cols)``."""
    if amap is None:
        return None
    order = [letters.index(c) for c in batch + rows + cols]
    full = amap.expand(tensor.shape).permute(order)
    return full.reshape(_prod(batch, size), _prod(rows, size), _prod(cols, size))


def sdpa(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``scaled_dot_product_attention(q, k, v)``: q·k contracted, v's atoms flow out."""
    q, k, v = args[0], args[1], args[2]
    qmap, kmap, vmap = state.map_of(q), state.map_of(k), state.map_of(v)
    qk = _side(state, qmap, -2) if qmap is not None else None
    kk = _side(state, kmap, -2) if kmap is not None else None
    _contract(state, qk, kk)
    reps = []
    for amap in (qmap, kmap, vmap):
        if amap is not None and amap.dim() > 2 and not varies(amap, -1):
            reps.append(state.map_of_rep(amap))
    if len(reps) > 1:
        first = reps[0]
        for other in reps[1:]:
            state.atoms.union(*torch.broadcast_tensors(first, other))
    if vmap is None:
        return
    if varies(vmap, -2):
        state.freeze(vmap)
        return
    state.set_map(out, state.atoms.find(vmap))


def multi_head_attention(
    state: TraceState, args: Any, kwargs: dict[str, Any], out: Any
) -> None:
    """``nn.MultiheadAttention``: its projections, inputs and output width stay unpruned."""
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            state.freeze(state.peek(value))
    first = out[0] if isinstance(out, tuple) else out
    if isinstance(first, torch.Tensor):
        state.set_map(first, None)
