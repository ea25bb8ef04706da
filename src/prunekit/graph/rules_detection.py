"""Coupling rules for detection and segmentation models (torchvision's detectors).

A detector is a backbone, an FPN and heads followed by post-processing: box decoding,
``topk`` / ``sort`` / NMS, RoI pooling of the FPN maps for the second-stage heads, and
writes into preallocated tensors (``result[idx] = level_result``). Three kinds of rules:

- op rules: RoI pooling passes the feature channels through (the boxes are coordinates);
  ``__setitem__`` carries the channels of what it writes into the destination (also for an
  empty destination, so heads fed by zero detections stay coupled); data-dependent
  selection and ordering (``topk``, ``sort``, ``argmax``...) pins the channels it reads;
  rounding ops are elementwise.
- module entry: ``FrozenBatchNorm2d`` scales channels with four buffers; they are coupled
  to the channels as a BatchNorm's (role ``norm``), not as free tensors.
- module exit: whatever a prediction head returns (class logits, anchor x box deltas,
  mask and keypoint logits) is pinned, so those widths never change even when the
  post-processing that reads them runs on zero boxes and never touches them.

Modules are recognised by the name of a torchvision class in their MRO, so torchvision is
never imported here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..inputs import flat_tensors
from . import rules_pointwise as pointwise
from .state import NORM, TraceState, empty_map, varies

ROUNDING = {"log2", "log10", "log1p", "expm1", "exp2", "floor", "ceil", "round", "trunc", "frac"}
SELECTING = {"topk", "sort", "msort", "kthvalue", "median", "mode", "cummax", "cummin"}
POSITIONS = {"argmax", "argmin", "argsort"}  # integer results: indices of channels
WRITES = {"__setitem__"}  # returns None: recorded for its destination
MIXING_POOLS = {"ps_roi_align", "ps_roi_pool"}  # position-sensitive: channels become bins

PREDICTION_HEADS = {
    "RPNHead", "FastRCNNPredictor", "MaskRCNNPredictor", "KeypointRCNNPredictor",
    "RetinaNetHead", "FCOSHead", "SSDHead", "SSDLiteHead",
}
FROZEN_NORMS = {"FrozenBatchNorm2d"}
NORM_BUFFERS = ("weight", "bias", "running_mean", "running_var")


def records(func: Any) -> bool:
    """True for the ops without a floating result that the trace must still see: writes
    (``__setitem__``) and ops returning channel indices (``argmax``...)."""
    name = getattr(func, "__name__", "")
    return name in WRITES or name in POSITIONS


def _peek_all(state: TraceState, args: Any, kwargs: dict[str, Any]) -> list[torch.Tensor]:
    maps = (state.peek(t) for t in pointwise.tensor_args(args, kwargs))
    return [m for m in maps if m is not None]


def _clear(state: TraceState, out: Any) -> None:
    for tensor in flat_tensors(out):
        state.set_map(tensor, None)


def select(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``topk`` / ``sort``...: which element lands where depends on the values, so the
    channels read are pinned and the results hold none."""
    for amap in _peek_all(state, args, kwargs):
        state.freeze(amap)
    _clear(state, out)


def positions(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``argmax(x, dim)``: the indices name channels when ``dim`` holds channels (pinned)."""
    x = args[0]
    amap = state.peek(x) if isinstance(x, torch.Tensor) else None
    if amap is None:
        return
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dim is None or varies(amap, int(dim) % max(amap.dim(), 1)):
        state.freeze(amap)


def roi_pool(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``roi_align(x, rois, ...)`` / ``roi_pool``: output ``(rois, C, h, w)`` keeps the
    channels of ``x``; batch and spatial positions of ``x`` must hold none."""
    x, rois = args[0], args[1]
    if isinstance(rois, torch.Tensor):
        state.freeze(state.peek(rois))
    first = out[0] if isinstance(out, (tuple, list)) else out
    amap = state.peek(x)
    if amap is None or not isinstance(first, torch.Tensor):
        return
    for d in (0, *range(2, amap.dim())):
        if varies(amap, d):
            state.freeze(amap)
            state.set_map(first, None)
            return
        amap = amap.narrow(d, 0, 1)
    state.set_map(first, amap)


def mixing_pool(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """Position-sensitive RoI pooling reads channel ``c`` into bin ``c % bins``: pinned."""
    select(state, args, kwargs, out)


def _host(index: Any) -> Any:
    if isinstance(index, torch.Tensor):
        return index.cpu() if not index.is_floating_point() else index
    if isinstance(index, tuple):
        return tuple(_host(i) for i in index)
    if isinstance(index, list):
        return [_host(i) for i in index]
    return index


def _broadcasts(small: torch.Tensor, shape: torch.Size) -> bool:
    if small.dim() != len(shape):
        return False
    return all(s in (1, t) for s, t in zip(small.shape, shape, strict=True))


def _write_empty(
    state: TraceState, dst: torch.Tensor, dmap: torch.Tensor | None, vmap: torch.Tensor
) -> None:
    """An empty destination (zero boxes): its channels are those written into it."""
    if not _broadcasts(vmap, dst.shape):
        state.freeze(vmap)
        return
    if dmap is None:
        state.set_map(dst, vmap)
        return
    state.unite(dmap, vmap)
    state.set_map(dst, state.atoms.find(dmap))


def _written(
    state: TraceState, value: Any, vmap: torch.Tensor | None, shape: torch.Size
) -> torch.Tensor | None:
    """The value's atom map broadcast to the written region, or None if it cannot be."""
    if vmap is None:
        return empty_map(shape)
    full = vmap.expand(value.shape)
    while full.dim() > len(shape) and full.size(0) == 1:
        full = full[0]
    try:
        return torch.broadcast_to(full, shape)
    except RuntimeError:
        return None


def setitem(state: TraceState, args: Any, kwargs: dict[str, Any], out: Any) -> None:
    """``dst[index] = value``: the written elements take the value's channels.

    Where both the destination and the value hold channels they are united (as by an
    add); channels of the destination written by a tensor without channels, or written
    at fixed positions that cannot follow pruning, are pinned.
    """
    dst, index, value = args[0], args[1], args[2]
    is_tensor = isinstance(value, torch.Tensor)
    vmap = state.peek(value) if is_tensor and value.is_floating_point() else None
    if not isinstance(dst, torch.Tensor) or not dst.is_floating_point():
        state.freeze(vmap)
        return
    dmap = state.peek(dst)
    if vmap is None and dmap is None:
        return
    if dst.numel() == 0:
        if vmap is not None:
            _write_empty(state, dst, dmap, vmap)
        return
    full = dmap.expand(dst.shape).clone() if dmap is not None else empty_map(dst.shape)
    index = _host(index)
    region = full[index]
    written = _written(state, value, vmap, region.shape)
    if written is None:
        state.freeze(dmap)
        state.freeze(vmap)
        return
    if dmap is not None:
        inside = int(region[region >= 0].unique().numel())
        if 0 < inside < int(full[full >= 0].unique().numel()):
            state.freeze(dmap)  # fixed positions among the channels
        if is_tensor and value.numel() > 1:
            state.freeze(region[(written < 0) & (region >= 0)])
    state.atoms.union(region, written)
    full[index] = torch.where(written >= 0, written, region)
    state.set_map(dst, state.atoms.find(full))


RULES: dict[str, Any] = {name: pointwise.unary for name in ROUNDING}
RULES.update({name: select for name in SELECTING})
RULES.update({name: positions for name in POSITIONS})
RULES.update({name: mixing_pool for name in MIXING_POOLS})
RULES.update({"roi_align": roi_pool, "roi_pool": roi_pool, "setitem": setitem})


def _torchvision_kind(module: nn.Module) -> str | None:
    """``"head"``, ``"frozen_norm"`` or None, from the torchvision classes of ``module``."""
    for base in type(module).__mro__:
        if not base.__module__.startswith("torchvision."):
            continue
        if base.__name__ in PREDICTION_HEADS:
            return "head"
        if base.__name__ in FROZEN_NORMS:
            return "frozen_norm"
    return None


def enter(state: TraceState, module: nn.Module) -> None:
    """Called when ``module``'s forward starts: a frozen norm's buffers become norm dims."""
    if _torchvision_kind(module) != "frozen_norm":
        return
    for leaf in NORM_BUFFERS:
        tensor = getattr(module, leaf, None)
        if (isinstance(tensor, torch.Tensor) and state.param_key(tensor) is not None
                and tensor.dim() == 1 and state.peek(tensor) is None):
            state.set_map(tensor, state.pdim(tensor, 0, NORM))


def leave(state: TraceState, module: nn.Module, output: Any) -> None:
    """Called when ``module``'s forward returns: a prediction head's outputs are pinned."""
    if _torchvision_kind(module) != "head":
        return
    for tensor in flat_tensors(output):
        state.freeze(state.peek(tensor))
