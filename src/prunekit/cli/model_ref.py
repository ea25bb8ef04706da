"""Resolve ``--model`` (zoo name, ``torchvision:NAME`` or ``package.module:factory``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import zoo
from ..errors import ExampleInputError, FormatError
from ..io.refs import build_from_ref, normalize_ref


def build_model(ref: str, weights: Path | None = None) -> nn.Module:
    """Build the model ``ref`` names and optionally load safetensors weights strictly.

    The same builders as :func:`prunekit.load` (``zoo``, ``torchvision``, an importable
    factory: naming one on the command line is consent to import it).
    """
    model = build_from_ref({"ref": normalize_ref(ref)}, allow_import=True)
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
