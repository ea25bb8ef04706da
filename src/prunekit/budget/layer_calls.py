"""The layers a forward pass runs, as the latency table times them.

Timed: convolutions, linear layers, batch and layer norms (built again as their torch class
at other widths), and parameter-free torch modules (activations, pooling, dropout) whose
input is the output of one of those, directly or through other such modules: their width
is the width of the layer they follow (a ReLU after a BatchNorm shrinks with it). Each call
is recorded with its input's shape scaled to the target batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..inputs import ExampleInputs, call_model, eval_mode

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
         nn.ConvTranspose3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)


@dataclass(frozen=True)
class LayerCall:
    """One call of a timed layer in the forward pass.

    Attributes:
        name: the module's name.
        kind: the torch class it is timed as (``Conv2d``, ``ReLU6``, ...).
        config: what builds it (widths, kernel, stride, ...), JSON values.
        shape: its input's shape at the target batch.
        weight: the state-dict key whose dim holds its width (its weight, or for a
            parameter-free module the weight of the layer it follows).
        module: for a parameter-free module, the module itself (copied to time it).
    """

    name: str
    kind: str
    config: tuple[tuple[str, Any], ...]
    shape: tuple[int, ...]
    weight: str
    module: nn.Module | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def settings(self) -> dict[str, Any]:
        """:attr:`config` as a dict."""
        return dict(self.config)

    def signature(self) -> str:
        """The cache key part that says what is timed."""
        return json.dumps({"kind": self.kind, "config": self.settings, "shape": self.shape},
                          sort_keys=True)


def base_kind(module: nn.Module) -> str | None:
    """The torch class a timed layer is built as (``NonDynamicallyQuantizableLinear`` is a
    ``Linear``, torchvision's ``LayerNorm2d`` a ``LayerNorm``), or None if it is not timed."""
    for cls in (*CONVS, nn.Linear, *NORMS):
        if isinstance(module, cls):
            return cls.__name__
    return None


def _config(module: nn.Module) -> dict[str, Any] | None:
    if isinstance(module, CONVS):
        return {"in": module.in_channels, "out": module.out_channels,
                "kernel": list(module.kernel_size), "stride": list(module.stride),
                "padding": module.padding if isinstance(module.padding, str)
                else list(module.padding),
                "dilation": list(module.dilation), "groups": module.groups,
                "output_padding": list(module.output_padding), "bias": module.bias is not None,
                "padding_mode": module.padding_mode}
    if isinstance(module, nn.Linear):
        return {"in": module.in_features, "out": module.out_features,
                "bias": module.bias is not None}
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        return {"in": module.num_features, "affine": module.affine}
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return {"in": module.normalized_shape[0], "affine": module.elementwise_affine}
    return None


def _weight_key(name: str, module: nn.Module) -> str | None:
    for leaf in ("weight", "running_mean"):
        if isinstance(getattr(module, leaf, None), torch.Tensor):
            return f"{name}.{leaf}" if name else leaf
    return None


def _parameter_free(module: nn.Module) -> bool:
    """A leaf torch module without parameters or buffers (an activation, a pooling)."""
    return (type(module).__module__.startswith("torch.nn")
            and not any(True for _ in module.children())
            and not any(True for _ in module.parameters())
            and not any(True for _ in module.buffers()))


@dataclass(frozen=True)
class _Width:
    """Which dim of a tensor holds channels, how many, and the member that owns them."""

    key: str
    member_dim: int
    dim: int
    width: int

    def matches(self, tensor: torch.Tensor) -> bool:
        return tensor.dim() > self.dim % tensor.dim() and tensor.shape[self.dim] == self.width


def _output_width(module: nn.Module, key: str, config: dict[str, Any],
                  out: torch.Tensor) -> _Width | None:
    """The width of a timed layer's output."""
    if isinstance(module, CONVS):
        transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
        return _Width(key, 1 if transposed else 0, 1, int(config["out"]))
    if isinstance(module, nn.Linear):
        return _Width(key, 0, -1, int(config["out"]))
    dim = config.get("dim", 1 if not isinstance(module, nn.LayerNorm) else -1)
    return _Width(key, 0, dim, int(config["in"])) if out.dim() > 1 else None


class _Recorder:
    """Forward hooks that record the calls (see the module docstring)."""

    def __init__(self, rows: int, batch: int) -> None:
        self.rows, self.batch = rows, batch
        self.calls: list[LayerCall] = []
        # id(output tensor) -> its width; the tensor is held so that its id stays its own
        self.widths: dict[int, tuple[_Width, torch.Tensor]] = {}

    def _shape(self, tensor: torch.Tensor) -> tuple[int, ...]:
        shape = list(tensor.shape)
        if shape[0] % self.rows == 0:
            shape[0] = shape[0] * self.batch // self.rows
        return tuple(shape)

    def timed(self, module: nn.Module, args: tuple[Any, ...], out: Any, name: str,
              config: dict[str, Any], key: str) -> None:
        if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() == 0:
            return
        shape = self._shape(args[0])
        if isinstance(module, nn.LayerNorm):  # normalised over the last dim, or over dim 1
            config = {**config, "dim": -1 if shape[-1] == config["in"] else 1}
        self.calls.append(LayerCall(name, base_kind(module) or type(module).__name__,
                                    _frozen(config), shape, key))
        if isinstance(out, torch.Tensor):
            width = _output_width(module, key, config, out)
            if width is not None and width.matches(out):
                self.widths[id(out)] = (width, out)

    def follower(self, module: nn.Module, args: tuple[Any, ...], out: Any, name: str) -> None:
        if not args or not isinstance(args[0], torch.Tensor):
            return
        found = self.widths.get(id(args[0]))
        if found is None or found[1] is not args[0] or not found[0].matches(args[0]):
            return
        width = found[0]
        config = {"in": width.width, "dim": width.dim, "member_dim": width.member_dim,
                  "elementwise": True, "repr": module.extra_repr()}
        self.calls.append(LayerCall(name, type(module).__name__, _frozen(config),
                                    self._shape(args[0]), width.key, module))
        if isinstance(out, torch.Tensor) and out.dim() == args[0].dim() and width.matches(out):
            self.widths[id(out)] = (width, out)


def _frozen(config: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in config.items()))


def layer_calls(model: nn.Module, example_inputs: ExampleInputs, rows: int,
                batch: int) -> list[LayerCall]:
    """Every timed layer's calls in one forward pass on ``example_inputs`` (of ``rows``
    rows), with the input shape scaled to ``batch`` rows.

    Args:
        model: the model (run once in eval mode without gradients; not changed).
        example_inputs: inputs it accepts.
        rows: the batch size of ``example_inputs``.
        batch: the batch size the table is for.

    Returns:
        The calls, in the order they ran.
    """
    recorder = _Recorder(rows, batch)
    handles = []
    for name, module in model.named_modules():
        config, key = _config(module), _weight_key(name, module)
        if config is not None and key is not None:
            handles.append(module.register_forward_hook(
                lambda m, a, o, n=name, c=config, k=key: recorder.timed(m, a, o, n, c, k)))
        elif _parameter_free(module):
            handles.append(module.register_forward_hook(
                lambda m, a, o, n=name: recorder.follower(m, a, o, n)))
    try:
        with torch.no_grad(), eval_mode(model):
            call_model(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return recorder.calls
