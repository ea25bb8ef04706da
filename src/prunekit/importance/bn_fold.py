"""The BatchNorm that directly follows a layer, and the scale it gives the layer's outputs.

A BatchNorm in eval mode multiplies output channel ``c`` of the layer before it by
``gamma_c / sqrt(running_var_c + eps)``; folding it into the layer multiplies the weights of
that output channel by it. Scoring ``|w|`` times the absolute scale ranks the weights of
layers of different raw scale as the folded network sees them (``importance="bn_folded"``).

The pairing is found by running the model once on the example inputs: a layer is paired
with a BatchNorm whose input is exactly that layer's output tensor (nothing in between) and
whose width is the layer's output width. Layers without one keep a scale of 1.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..inputs import ExampleInputs, model_outputs

FOLDABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # output channels along dim 0
Norm = nn.modules.batchnorm._BatchNorm


def _weight(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor), "a foldable layer has a weight tensor"
    return weight


def following_norms(
    model: nn.Module, names: Iterable[str], example_inputs: ExampleInputs
) -> dict[str, Norm]:
    """The BatchNorm fed directly by each of the named layers (those that have one).

    A layer whose output feeds two different BatchNorms, or a BatchNorm without running
    statistics, is left unpaired.
    """
    layers = {n: m for n in names if isinstance(m := model.get_submodule(n), FOLDABLE)}
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # id -> (layer, tensor kept alive)
    found: dict[str, set[Norm]] = {}

    def after_layer(name: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, _args: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                outputs[id(out)] = (name, out)
        return hook

    def before_norm(norm: nn.Module, args: tuple[object, ...]) -> None:
        source = outputs.get(id(args[0])) if args else None
        if source is not None and source[1] is args[0]:
            found.setdefault(source[0], set()).add(norm)  # type: ignore[arg-type]

    handles = [m.register_forward_hook(after_layer(n)) for n, m in layers.items()]
    handles += [m.register_forward_pre_hook(before_norm)
                for m in model.modules() if isinstance(m, Norm)]
    try:
        model_outputs(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: next(iter(norms)) for name, norms in found.items()
            if len(norms) == 1 and _usable(next(iter(norms)), layers[name])}


def _usable(norm: Norm, layer: nn.Module) -> bool:
    return norm.running_var is not None and norm.num_features == _weight(layer).shape[0]


def norm_scale(norm: Norm) -> torch.Tensor:
    """``|gamma / sqrt(running_var + eps)|`` per channel (``gamma`` is 1 without affine)."""
    assert norm.running_var is not None
    scale = (norm.running_var.detach().float() + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight.detach().float()
    return scale.abs()


def folded_scales(
    model: nn.Module, names: Iterable[str], example_inputs: ExampleInputs
) -> dict[str, torch.Tensor]:
    """Per named layer with a following BatchNorm: its output-channel scale, shaped to
    broadcast over the layer's weight (``(out, 1, ...)``)."""
    scales = {}
    for name, norm in following_norms(model, names, example_inputs).items():
        weight = _weight(model.get_submodule(name))
        shape = (-1,) + (1,) * (weight.dim() - 1)
        scales[name] = norm_scale(norm).to(weight.device).reshape(shape)
    return scales
