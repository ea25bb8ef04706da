"""A tiny dataset the compare CLI tests load with ``--dataset compare_factories:loaders``."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset


def loaders() -> tuple[TensorDataset, TensorDataset]:
    """192 training and 64 test 1x28x28 images, 4 classes a model can learn."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 28, 28, generator=gen)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    return TensorDataset(x[:192], y[:192]), TensorDataset(x[192:], y[192:])
