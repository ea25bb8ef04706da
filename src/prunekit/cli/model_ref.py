"""Resolve ``--model`` (zoo name, ``torchvision:NAME`` or ``package.module:factory``)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import torch
from torch import nn

from .. import zoo
from ..errors import ExampleInputError, FormatError, TargetError


def _import_factory(ref: str) -> nn.Module:
    module_name, _, attr = ref.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like ``python -m``: the user's project is importable
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise TargetError(
            f"cannot import model factory {ref!r}: {exc}",
            "use package.module:function, where function() returns an nn.Module",
        ) from exc
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - user code
        raise TargetError(f"model factory {ref!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise TargetError(f"model factory {ref!r} returned {type(model).__name__}, not nn.Module")
    return model


def _torchvision_model(name: str) -> nn.Module:
    try:
        import torchvision
    except ImportError as exc:
        raise TargetError("torchvision is not installed", "pip install torchvision") from exc
    try:
        model: nn.Module = torchvision.models.get_model(name, weights=None)
    except ValueError as exc:
        raise TargetError(f"unknown torchvision model {name!r}") from exc
    return model


def build_model(ref: str, weights: Path | None = None) -> nn.Module:
    """Build the model ``ref`` names and optionally load safetensors weights strictly."""
    if ref.startswith("torchvision:"):
        model = _torchvision_model(ref.split(":", 1)[1])
    elif ":" in ref:
        model = _import_factory(ref)
    else:
        model = zoo.build(ref)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors file into ``model`` strictly (no pickle is ever read)."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise FormatError(f"cannot read weights {path}: {exc}", "pass a .safetensors file") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FormatError(f"weights {path} do not fit the model: {exc}") from exc


def example_inputs_for(ref: str, input_shape: str | None, batch: int = 2) -> torch.Tensor:
    """Example inputs: ``--input-shape`` if given (``1,3,224,224``), else the zoo's."""
    if input_shape:
        try:
            shape = tuple(int(d) for d in input_shape.split(","))
        except ValueError as exc:
            raise ExampleInputError(
                f"bad --input-shape {input_shape!r}", "e.g. --input-shape 1,3,224,224"
            ) from exc
        return torch.randn(shape, generator=torch.Generator().manual_seed(0))
    if ref.startswith("torchvision:") or ":" in ref:
        raise ExampleInputError(
            f"--input-shape is required for {ref!r}", "e.g. --input-shape 1,3,224,224"
        )
    return zoo.example_inputs(ref, batch)
