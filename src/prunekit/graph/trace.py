"""Trace a model's real forward pass and record which channel slices are coupled.

Method: the example inputs run through the model under a
:class:`torch.overrides.TorchFunctionMode`, which sees every torch-level call (``F.conv2d``,
``F.linear`` also when a module passes its weight to a functional, ``torch.cat``,
``Tensor.view``, ``chunk``, ``+``, ``scaled_dot_product_attention``...), while forward hooks
give the module path of each call. Tensors are linked by identity. Why this method: it works
on any model that runs forward (data-dependent control flow, functional attention, helper
functions), unlike symbolic tracing, and sees the op names that the autograd graph loses.

Each call is handled by a coupling rule chosen from explicit allow-lists; an op with no rule
that touches prunable channels raises :class:`UnsupportedModelError` naming the op and the
module, never passes silently. Calls inside ignored modules are opaque: the channels they
read and write are pinned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
from torch.overrides import TorchFunctionMode

from ..inputs import ExampleInputs, call_model, eval_mode, flat_tensors
from ..targets import IgnoreEntry, ignore_entries, matches
from . import rules_attention as attention
from . import rules_detection as detection
from . import rules_layers as layers
from . import rules_pointwise as pointwise
from .outputs import check_outputs
from .rules_layout import LAYOUT, layout
from .state import TraceState

Rule = Callable[[TraceState, Any, dict[str, Any], Any], None]

RULES: dict[str, Rule] = {
    "linear": layers.linear,
    "conv1d": layers.conv, "conv2d": layers.conv, "conv3d": layers.conv,
    "conv_transpose1d": layers.conv_transpose, "conv_transpose2d": layers.conv_transpose,
    "conv_transpose3d": layers.conv_transpose,
    "batch_norm": layers.batch_norm, "instance_norm": layers.instance_norm,
    "layer_norm": layers.layer_norm, "rms_norm": layers.rms_norm,
    "group_norm": layers.group_norm, "embedding": layers.embedding, "prelu": layers.prelu,
    "matmul": attention.matmul, "bmm": attention.matmul, "mm": attention.matmul,
    "einsum": attention.einsum,
    "scaled_dot_product_attention": attention.sdpa,
    "multi_head_attention_forward": attention.multi_head_attention,
}
RULES.update({name: pointwise.unary for name in pointwise.UNARY})
RULES.update({name: pointwise.elementwise for name in pointwise.BINARY})
RULES.update({name: pointwise.spatial for name in pointwise.SPATIAL})
RULES.update({name: pointwise.reduce for name in pointwise.REDUCE})
RULES.update({name: pointwise.softmax for name in pointwise.SOFTMAX})
RULES.update({name: pointwise.no_atoms for name in pointwise.CREATE})
RULES["normalize"] = pointwise.normalize
RULES.update(detection.RULES)

ALIASES = {
    "iadd": "add", "radd": "add", "isub": "sub", "rsub": "rsub", "imul": "mul", "rmul": "mul",
    "truediv": "div", "itruediv": "div", "rtruediv": "div", "idiv": "div",
    "matmul": "matmul", "rmatmul": "matmul", "imatmul": "matmul", "pow": "pow", "rpow": "pow",
    "ipow": "pow", "neg": "neg", "abs": "abs", "pos": "positive",
}


def op_name(func: Callable[..., Any]) -> str:
    """Normalised op name: ``Tensor.__iadd__`` -> ``add``, ``relu_`` -> ``relu``."""
    name = getattr(func, "__name__", str(func))
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        return ALIASES.get(name, name)
    name = name.lstrip("_")
    if name.endswith("_") and name != "_":
        name = name[:-1]
    return ALIASES.get(name, name)


class _Recorder(TorchFunctionMode):
    """Apply the coupling rule of every call made during the forward pass."""

    def __init__(self, state: TraceState, ignored: set[str]) -> None:
        super().__init__()
        self.state = state
        self.ignored = ignored
        self.opaque = 0  # depth inside ignored modules

    def __torch_function__(
        self, func: Any, types: Any, args: Any = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = [t for t in flat_tensors(out) if t.is_floating_point()]
        if not outs and not detection.records(func):
            return out
        self._record(func, args, kwargs, out)
        return out

    def _record(self, func: Any, args: Any, kwargs: dict[str, Any], out: Any) -> None:
        state = self.state
        inputs = pointwise.tensor_args(args, kwargs)
        maps = [m for m in (state.peek(t) for t in inputs) if m is not None]
        if self.opaque:
            for amap in maps:
                state.freeze(amap)
            return
        name = op_name(func)
        state.note_inputs(maps)
        if name in LAYOUT:
            layout(state, name, func, args, kwargs, out)
        elif name in RULES:
            RULES[name](state, args, kwargs, out)
        elif maps:
            raise state.unsupported(f"op {name!r}")


def _hooks(model: nn.Module, state: TraceState, recorder: _Recorder) -> list[Any]:
    """Global module hooks keeping ``state.stack`` = the modules whose forward is running."""
    names = {id(m): n for n, m in model.named_modules()}

    def pre(mod: nn.Module, _args: Any) -> None:
        name = names.get(id(mod))
        state.stack.append((name if name is not None else "?", mod))
        recorder.opaque += int(name in recorder.ignored)
        if not recorder.opaque:
            detection.enter(state, mod)

    def post(mod: nn.Module, _args: Any, out: Any) -> None:
        if not recorder.opaque:
            detection.leave(state, mod, out)
        name, _ = state.stack.pop()
        recorder.opaque -= int(name in recorder.ignored)

    return [
        register_module_forward_pre_hook(pre),
        register_module_forward_hook(post, always_call=True),
    ]


def ignored_modules(model: nn.Module, ignore: Iterable[IgnoreEntry]) -> set[str]:
    """Names of the modules selected by the ignore entries (validated by the caller)."""
    entries = ignore_entries(ignore)
    return {n for n, m in model.named_modules() if n and any(matches(e, n, m) for e in entries)}


def trace(
    model: nn.Module, example_inputs: ExampleInputs, ignore: Iterable[IgnoreEntry] = ()
) -> tuple[TraceState, list[torch.Tensor]]:
    """Run ``model`` once (eval mode, no grad) and record its channel coupling.

    Args:
        model: the module to analyse (not modified).
        example_inputs: inputs it accepts.
        ignore: module names, types or compiled regexes whose channels stay untouched.

    Returns:
        ``(state, outputs)``: the coupling record and the output tensors. Atoms reaching
        an output are pinned.

    Raises:
        UnsupportedModelError: an op with no coupling rule touches prunable channels, or
            the output holds something the trace cannot look into.
    """
    state = TraceState(model)
    recorder = _Recorder(state, ignored_modules(model, ignore))
    handles = _hooks(model, state, recorder)
    try:
        with torch.no_grad(), eval_mode(model), recorder:
            out = call_model(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    outputs = flat_tensors(out)
    check_outputs(out, outputs)
    for tensor in outputs:
        amap = state.peek(tensor)
        if amap is not None:
            state.freeze(amap)
            state.output_atoms.append(amap.reshape(-1))
    return state, outputs
