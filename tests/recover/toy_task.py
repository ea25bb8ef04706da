"""A learnable toy task for recovery tests: the label is which of 4 input blocks has the
largest sum; a small MLP learns it in a few epochs."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.data import TensorLoader


def toy_problem(seed: int = 0, batch: int = 64) -> tuple[nn.Module, TensorLoader]:
    """A fresh MLP and a shuffled loader of 512 examples."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 16, generator=gen)
    y = x.view(512, 4, 4).sum(-1).argmax(-1)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    return model, TensorLoader(x, y, batch, shuffle=True, seed=seed)
