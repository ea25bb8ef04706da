"""Coupling rules for layers with parameters: Linear, Conv, ConvTranspose, norms, Embedding.

Each rule ties the parameter dims to the channel dims of the activations: a producer's
output dim creates the atoms of its output, a consumer's input dim is united with the atoms
of its input, and a norm's per-channel tensors are united with the channels they scale.
"""

from __future__ import annotations

from typing import Any

import torch

from .state import BIAS, IN, NORM, OUT, TraceState, along, rows, varies


def _arg(args: Any, kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _couple_input(state: TraceState, x: torch.Tensor, dim: int, atoms: torch.Tensor) -> None:
    """Unite input channel ``i`` (along ``dim`` of ``x``) with ``atoms[i]``; pin if unknown."""
    amap = state.map_of(x)
    if amap is None:
        state.freeze(atoms)
        return
    for row in rows(amap, dim, x.size(dim)):
        state.unite(row, atoms)


def _weight_ok(state: TraceState, weight: Any) -> bool:
    """A layer whose weight is computed (not a parameter) cannot be pruned here."""
    if state.param_key(weight) is not None:
        return True
    if isinstance(weight, torch.Tensor) and state.peek(weight) is not None:
        raise state.unsupported("a layer with a computed weight")
    return False


def _couple_bias(state: TraceState, bias: Any, out_atoms: torch.Tensor) -> None:
    """A bias parameter is sliced with the outputs; a computed one unites its atoms."""
    if not isinstance(bias, torch.Tensor):
        return
    if state.param_key(bias):
        state.atoms.union(state.pdim(bias, 0, BIAS), out_atoms)
    elif (amap := state.peek(bias)) is not None:
        state.atoms.union(amap.expand(bias.shape), out_atoms)


def _pin_inputs(state: TraceState, x: torch.Tensor) -> None:
    state.freeze(state.map_of(x))


def linear(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``y = x W^T + b``: W (out, in); in ~ last dim of x, out = last dim of y."""
    x, weight = args[0], _arg(args, kwargs, 1, "weight")
    bias = _arg(args, kwargs, 2, "bias")
    if not _weight_ok(state, weight):
        _pin_inputs(state, x)
        return
    out_atoms = state.pdim(weight, 0, OUT)
    in_atoms = state.pdim(weight, 1, IN)
    if _mixes_positions(state, x, weight, in_atoms, out_atoms, bias, out):
        return
    _couple_input(state, x, x.dim() - 1, in_atoms)
    _couple_bias(state, bias, out_atoms)
    state.set_map(out, along(out_atoms, out.dim() - 1, out.dim()))


def _mixes_positions(state: TraceState, x: torch.Tensor, weight: torch.Tensor,
                     in_atoms: torch.Tensor, out_atoms: torch.Tensor, bias: Any,
                     out: torch.Tensor) -> bool:
    """A Linear over tokens (MLP-Mixer's token MLP, gMLP's spatial gate: ``x.transpose(1,
    2)`` in, the channels on another dim): each output row still belongs to the channel of
    its input row, so the channels pass through and the Linear's own dims (token counts)
    stay whole. Returns False for an ordinary Linear over channels."""
    amap = state.map_of(x)
    last = x.dim() - 1
    if amap is None or varies(amap, last) or not any(varies(amap, d) for d in range(last)):
        return False
    state.freeze(in_atoms)
    state.freeze(out_atoms)
    if isinstance(bias, torch.Tensor) and state.param_key(bias):
        state.freeze(state.pdim(bias, 0, BIAS))
    state.set_map(out, amap.narrow(last, 0, 1))
    return True


def conv(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Convolution, W (out, in/groups, k...); grouped and depthwise kept consistent."""
    x, weight = args[0], args[1]
    bias = _arg(args, kwargs, 2, "bias")
    groups = int(_arg(args, kwargs, 6, "groups", 1))
    if not _weight_ok(state, weight):
        _pin_inputs(state, x)
        return
    cdim = x.dim() - weight.dim() + 1  # 1 for batched input, 0 for unbatched
    out_atoms = state.pdim(weight, 0, OUT)
    in_atoms = state.pdim(weight, 1, IN)
    channels = x.size(cdim)
    if groups == 1:
        _couple_input(state, x, cdim, in_atoms)
    elif weight.size(1) == 1:  # depthwise: output channel o reads input channel o // mult
        state.freeze(in_atoms)
        mult = weight.size(0) // channels
        amap = state.map_of(x)
        if amap is None:
            state.freeze(out_atoms)
        else:
            for row in rows(amap, cdim, channels):
                state.unite(out_atoms.view(channels, mult), row.view(channels, 1))
    else:  # grouped: every group keeps the same positions (in and out)
        amap = state.map_of(x)
        if amap is None:
            state.freeze(in_atoms)
        else:
            for row in rows(amap, cdim, channels):
                state.unite(row.view(groups, -1), in_atoms.view(1, -1))
        per_group = out_atoms.view(groups, -1)
        state.atoms.union(per_group[:1].expand_as(per_group), per_group)
    _couple_bias(state, bias, out_atoms)
    state.set_map(out, along(out_atoms, cdim, out.dim()))


def conv_transpose(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Transposed convolution, W (in, out/groups, k...); grouped ones are left unpruned."""
    x, weight = args[0], args[1]
    bias = _arg(args, kwargs, 2, "bias")
    groups = int(_arg(args, kwargs, 6, "groups", 1))
    if not _weight_ok(state, weight):
        _pin_inputs(state, x)
        return
    cdim = x.dim() - weight.dim() + 1
    in_atoms = state.pdim(weight, 0, IN)
    out_atoms = state.pdim(weight, 1, OUT)
    if groups == 1:
        _couple_input(state, x, cdim, in_atoms)
    else:
        state.freeze(in_atoms)
        state.freeze(out_atoms)
        _pin_inputs(state, x)
    if bias is not None and state.param_key(bias):
        state.atoms.union(state.pdim(bias, 0, BIAS), out_atoms)
    if groups != 1:
        state.freeze(state.pdim(bias, 0, BIAS) if bias is not None and state.param_key(bias)
                     else None)
    state.set_map(out, along(out_atoms, cdim, out.dim()))


def _per_channel(
    state: TraceState, x: torch.Tensor, cdim: int, tensors: list[Any], out: torch.Tensor
) -> None:
    """Unite channel ``c`` of ``x`` with index ``c`` of each per-channel tensor."""
    amap = state.map_of(x)
    if amap is None:
        return
    present = [t for t in tensors if isinstance(t, torch.Tensor) and state.param_key(t)]
    for tensor in present:
        _couple_input(state, x, cdim, state.pdim(tensor, 0, NORM))
    state.set_map(out, amap)


def batch_norm(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``F.batch_norm(x, running_mean, running_var, weight, bias, ...)``: per channel."""
    stats = [_arg(args, kwargs, i, n) for i, n in
             ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))]
    _per_channel(state, args[0], 1, stats, out)


def instance_norm(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``F.instance_norm``: per channel like batch norm."""
    stats = [_arg(args, kwargs, i, n) for i, n in
             ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))]
    _per_channel(state, args[0], 1, stats, out)


def layer_norm(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """LayerNorm / RMSNorm over the last dim(s); the normalised channels are mixed."""
    x = args[0]
    shape = _arg(args, kwargs, 1, "normalized_shape")
    weight = _arg(args, kwargs, 2, "weight")
    bias = _arg(args, kwargs, 3, "bias")
    amap = state.map_of(x)
    if amap is None:
        return
    span = len(shape) if isinstance(shape, (list, tuple)) else 1
    if span != 1 or weight is None or state.param_key(weight) is None:
        if any(varies(amap, d) for d in range(x.dim() - span, x.dim())):
            state.freeze(amap)
        state.set_map(out, amap)
        return
    state.mixing.append(amap.reshape(-1))
    _per_channel(state, x, x.dim() - 1, [weight, bias], out)


def rms_norm(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``F.rms_norm(x, normalized_shape, weight, eps)``."""
    weight = _arg(args, kwargs, 2, "weight")
    layer_norm(state, (args[0], _arg(args, kwargs, 1, "normalized_shape"), weight, None), {}, out)


def group_norm(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """GroupNorm: channels of every group keep the same positions; stats are mixed."""
    x = args[0]
    groups = int(_arg(args, kwargs, 1, "num_groups"))
    weight, bias = _arg(args, kwargs, 2, "weight"), _arg(args, kwargs, 3, "bias")
    amap = state.map_of(x)
    if amap is None:
        return
    if weight is None or state.param_key(weight) is None:
        state.freeze(amap)
        state.set_map(out, amap)
        return
    for row in rows(amap, 1, x.size(1)):
        grid = row.view(groups, -1)
        state.atoms.union(grid[:1].expand_as(grid), grid)
    state.mixing.append(amap.reshape(-1))
    _per_channel(state, x, 1, [weight, bias], out)


def embedding(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``F.embedding(idx, W)``: W (vocab, dim); the embedding dim is a producer."""
    weight = _arg(args, kwargs, 1, "weight")
    if not _weight_ok(state, weight):
        return
    out_atoms = state.pdim(weight, 1, OUT)
    state.set_map(out, along(out_atoms, out.dim() - 1, out.dim()))


def prelu(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """PReLU with one slope per channel (dim 1), or a single shared slope."""
    x, weight = args[0], _arg(args, kwargs, 1, "weight")
    if weight.numel() == 1 or state.param_key(weight) is None:
        state.set_map(out, state.map_of(x))
        return
    _per_channel(state, x, 1 if x.dim() > 1 else 0, [weight], out)
