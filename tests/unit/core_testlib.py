"""Shared code for the core tests: model fingerprints and small models."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def fingerprint(model: nn.Module) -> dict[str, Any]:
    """Everything an error must leave untouched: tensors bit for bit, hooks, modes, identity."""
    return {
        "state": {k: _tensor_state(v) for k, v in model.state_dict().items()},
        "params": [(n, id(p)) for n, p in model.named_parameters()],
        "buffers": [n for n, _ in model.named_buffers()],
        "hooks": [
            (n, list(m._forward_pre_hooks), list(m._forward_hooks), list(m._backward_hooks))
            for n, m in model.named_modules()
        ],
        "training": [(n, m.training) for n, m in model.named_modules()],
        "attrs": [(n, sorted(vars(m))) for n, m in model.named_modules()],
    }


def _tensor_state(value: torch.Tensor) -> tuple[Any, ...]:
    if isinstance(value, nn.parameter.UninitializedTensorMixin):
        return ("uninitialised", id(value), torch.zeros(0))
    return (value.dtype, value.shape, value.detach().clone())


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Bit-identical comparison of two fingerprints."""
    assert before["state"].keys() == after["state"].keys()
    for key, (dtype, shape, tensor) in before["state"].items():
        dtype2, shape2, tensor2 = after["state"][key]
        assert (dtype, shape) == (dtype2, shape2), key
        assert torch.equal(tensor.view(-1).view(torch.uint8), tensor2.view(-1).view(torch.uint8)), key
    for field in ("params", "buffers", "hooks", "training", "attrs"):
        assert before[field] == after[field], field


def nonzero_free(model: nn.Module) -> nn.Module:
    """Shift exact zeros away so that 'nonzero' counts equal 'kept' counts."""
    with torch.no_grad():
        for p in model.parameters():
            p[p == 0] = 1e-3
    return model


class ConvStack(nn.Module):
    """Linear, Conv1d/2d/3d and ConvTranspose2d in one model (all input widths divisible by 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(4, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv3d(8, 8, 1)
        self.t2 = nn.ConvTranspose2d(8, 12, 2, stride=2)
        self.fc = nn.Linear(12, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 4, 16)
        x = self.c1(x)  # (N, 8, 16)
        x = self.c2(x.view(x.shape[0], 8, 4, 4))  # (N, 8, 4, 4)
        x = self.c3(x.unsqueeze(2)).squeeze(2)  # (N, 8, 4, 4)
        x = self.t2(x)  # (N, 12, 8, 8)
        return self.fc(x.mean(dim=(2, 3)))  # (N, 8)
