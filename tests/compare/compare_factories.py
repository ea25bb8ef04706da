"""A tiny dataset: the compare CLI tests load it with ``--dataset compare_factories:loaders``,
the library-level tests take it as a :class:`DataBundle` (:func:`bundle`)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from prunekit.data import DataBundle, TensorLoader


def _tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """256 1x28x28 images and 4 classes a model can learn."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 28, 28, generator=gen)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    return x, y


def loaders() -> tuple[TensorDataset, TensorDataset]:
    """192 training and 64 test images."""
    x, y = _tensors()
    return TensorDataset(x[:192], y[:192]), TensorDataset(x[192:], y[192:])


def bundle() -> DataBundle:
    """The same images in batches of 64 (training shuffled)."""
    x, y = _tensors()
    return DataBundle(TensorLoader(x[:192], y[:192], 64, shuffle=True),
                      TensorLoader(x[192:], y[192:], 64), name="synthetic")
