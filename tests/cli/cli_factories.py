"""Model factories the CLI tests load with ``--model cli_factories:NAME``."""

from __future__ import annotations

import torch
from torch import nn


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def not_a_module() -> str:
    return "a string"
