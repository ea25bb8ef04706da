"""Coupling rules for ops that keep the channel layout: elementwise, pooling, reductions.

Elementwise ops are pass-through by an explicit allow-list; an op with several inputs
(residual ``add``, squeeze-excitation ``mul``) unites the atoms met at each element.
"""

from __future__ import annotations

from typing import Any

import torch

from .state import TraceState, varies

UNARY = {
    "relu", "relu6", "gelu", "silu", "sigmoid", "hardsigmoid", "hardswish", "hardtanh", "tanh",
    "elu", "selu", "celu", "leaky_relu", "mish", "softplus", "softsign", "exp", "log", "sqrt",
    "rsqrt", "abs", "neg", "erf", "square", "reciprocal", "sin", "cos", "sign", "logit",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "contiguous", "clone", "detach", "float", "double", "half", "bfloat16", "to", "type",
    "requires_grad", "clamp", "clip", "clamp_min", "clamp_max", "nan_to_num", "threshold",
    "positive", "cpu", "cuda", "zero", "fill", "uniform", "normal",
}
BINARY = {
    "add", "sub", "mul", "div", "rsub", "maximum", "minimum", "pow", "where", "lerp",
    "addcmul", "addcdiv", "masked_fill", "type_as", "true_divide", "floor_divide", "fmod",
}
SPATIAL = {
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
    "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "interpolate",
    "upsample", "upsample_nearest", "upsample_bilinear", "lp_pool2d",
}
REDUCE = {
    "mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp", "prod",
    "nansum", "nanmean",
}
SOFTMAX = {"softmax", "log_softmax", "softmin"}


def tensor_args(args: Any, kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """Floating tensors among the (possibly nested) arguments, in order."""
    found: list[torch.Tensor] = []

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                found.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(args)
    visit(list(kwargs.values()))
    return found


def unary(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Output element i belongs to the channel of input element i."""
    source = args[0] if isinstance(args[0], torch.Tensor) else None
    amap = state.map_of(source) if source is not None else None
    if isinstance(out, torch.Tensor):
        state.set_map(out, amap)


def elementwise(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Broadcasting n-ary op: unite the atoms of the inputs at every output element."""
    inputs = tensor_args(args, kwargs)
    maps = [m for m in (state.map_of(t) for t in inputs if not _shared_scalar(state, t))
            if m is not None]
    if not maps or not isinstance(out, torch.Tensor):
        if isinstance(out, torch.Tensor):
            state.set_map(out, None)
        return
    ndim = max([out.dim()] + [m.dim() for m in maps])  # a 0-d map times an unmapped vector
    maps = [m.view((1,) * (ndim - m.dim()) + tuple(m.shape)) for m in maps]
    merged = torch.broadcast_tensors(*maps)
    result = merged[0].clone()
    for other in merged[1:]:
        state.unite(result, other)
        result = torch.where(result >= 0, result, other)
    _freeze_unmatched(state, inputs, result)
    state.set_map(out, result)


def _shared_scalar(state: TraceState, tensor: torch.Tensor) -> bool:
    """A one-element parameter (a learnable scale or bias shared by every channel, as in
    timm's ``LearnableAffineBlock``) belongs to no channel: it is never sliced, and uniting
    its single atom with the channels it multiplies would tie them all into one."""
    return tensor.numel() == 1 and id(tensor) not in state.maps and (
        state.param_key(tensor) is not None)


def _freeze_unmatched(state: TraceState, inputs: list[torch.Tensor], result: torch.Tensor) -> None:
    """A tensor without atoms that varies along a channel dim pins those channels."""
    for tensor in inputs:
        if id(tensor) in state.maps or state.param_key(tensor) is not None:
            continue
        offset = result.dim() - tensor.dim()
        for d in range(tensor.dim()):
            if tensor.size(d) > 1 and varies(result, d + offset):
                state.freeze(result)
                return


def spatial(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Pooling / resizing: channels (dim 1) pass through, spatial dims must not hold atoms."""
    amap = state.map_of(args[0])
    outs = out if isinstance(out, tuple) else (out,)
    if amap is None:
        return
    for d in range(2, amap.dim()):
        if varies(amap, d):
            state.freeze(amap)
            return
        amap = amap.narrow(d, 0, 1)
    if outs[0].is_floating_point():
        state.set_map(outs[0], amap)


def _reduced_dims(args: Any, kwargs: dict[str, Any], ndim: int) -> list[int] | None:
    dim = kwargs.get("dim", args[1] if len(args) > 1 and not isinstance(args[1], bool) else None)
    if dim is None or isinstance(dim, torch.Tensor):
        return None
    dims = [dim] if isinstance(dim, int) else list(dim)
    return sorted(d % ndim for d in dims)


def reduce(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Reduction over some dims: reducing across channels pins them (they are mixed)."""
    amap = state.map_of(args[0]) if isinstance(args[0], torch.Tensor) else None
    if amap is None:
        return
    dims = _reduced_dims(args, kwargs, amap.dim())
    first = out[0] if isinstance(out, tuple) else out
    if dims is None:
        state.freeze(amap)
        return
    if any(varies(amap, d) for d in dims):
        _reduce_channels(state, amap, dims)
        amap = state.atoms.find(amap)
    keepdim = bool(kwargs.get("keepdim", args[2] if len(args) > 2 else False))
    for d in dims:
        amap = amap.narrow(d, 0, 1)
    if not keepdim:
        for d in reversed(dims):
            amap = amap.squeeze(d)
    if isinstance(first, torch.Tensor) and first.is_floating_point():
        state.set_map(first, amap if amap.dim() == first.dim() else None)


def _reduce_channels(state: TraceState, amap: torch.Tensor, dims: list[int]) -> None:
    """Reducing a dim that holds channels. Stacked branches (``torch.stack(paths, 1).sum(1)``
    in selective-kernel blocks: channels still vary along a kept dim) add up slice by slice,
    so the slices are united as in a residual ``add``; reducing the channels themselves
    mixes them, and they are pinned."""
    if not any(varies(amap, d) for d in range(amap.dim()) if d not in dims):
        state.freeze(amap)
        return
    for d in dims:
        state.unite(amap.narrow(d, 0, 1).expand_as(amap), amap)


def softmax(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Normalising across channels mixes them: those channels are pinned."""
    amap = state.map_of(args[0])
    if amap is None:
        return
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dim is None or varies(amap, int(dim) % amap.dim()):
        state.freeze(amap)
    state.set_map(out, amap)


def normalize(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``F.normalize(x, p, dim)``: like softmax, normalising across channels pins them."""
    dim = kwargs.get("dim", args[2] if len(args) > 2 else 1)
    softmax(state, (args[0], dim), {}, out)


def no_atoms(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Ops creating new values unrelated to channels (``zeros_like``, ``arange``...)."""
    if isinstance(out, torch.Tensor):
        state.set_map(out, None)


CREATE = {
    "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
    "new_zeros", "new_ones", "new_full", "new_empty", "new_tensor", "arange", "linspace",
    "randint_like",
}
