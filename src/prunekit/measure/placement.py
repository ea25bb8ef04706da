"""Where a model lives, and moving a batch there (tensors at any depth of a batch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter (or buffer); None if it has neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return None


def to_device(batch: Any, device: torch.device | None) -> Any:
    """``batch`` with every tensor in it (inside tuples, lists and dicts too) on ``device``.

    Tensors already there, and everything that is not a tensor, are passed on as they
    are (a mapping comes back as a plain dict); ``device=None`` returns ``batch`` itself.

    Args:
        batch: a tensor, or a (nested) tuple / list / dict holding tensors.
        device: the target device, or None.

    Returns:
        The batch with the same structure.
    """
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):  # e.g. a tokenizer's output: a plain dict of the same items
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(to_device(value, device) for value in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch
