"""A model's complete observable state, to prove a failed call left it exactly as it was."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

SIMPLE = (int, float, bool, str, type(None), tuple)


def _attributes(module: nn.Module) -> dict[str, Any]:
    """Every attribute: plain values by value, containers and objects by identity + content."""
    found: dict[str, Any] = {}
    for name, value in vars(module).items():
        if isinstance(value, torch.Tensor):
            found[name] = ("tensor", id(value))
        elif isinstance(value, SIMPLE):
            found[name] = value
        elif isinstance(value, dict):
            found[name] = ("dict", id(value), list(value.keys()), [id(v) for v in value.values()])
        elif hasattr(value, "to_dict"):  # a Hugging Face config
            found[name] = ("config", id(value), value.to_dict())
        else:
            found[name] = ("object", id(value))
    return found


def model_state(model: nn.Module) -> dict[str, Any]:
    """Module tree, attributes, hooks, modes, tensors bit for bit and their identities."""
    return {
        "modules": [(n, type(m), id(m)) for n, m in model.named_modules()],
        "attributes": {n: _attributes(m) for n, m in model.named_modules()},
        "tensors": {
            k: (v.dtype, tuple(v.shape), v.device, v.detach().clone())
            for k, v in model.state_dict(keep_vars=True).items()
        },
        "parameters": [(n, id(p), p.requires_grad) for n, p in model.named_parameters()],
        "buffers": [(n, id(b)) for n, b in model.named_buffers()],
    }


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Bit-identical comparison of two :func:`model_state` results."""
    for field in ("modules", "attributes", "parameters", "buffers"):
        assert before[field] == after[field], field
    assert before["tensors"].keys() == after["tensors"].keys()
    for key, (dtype, shape, device, value) in before["tensors"].items():
        dtype2, shape2, device2, value2 = after["tensors"][key]
        assert (dtype, shape, device) == (dtype2, shape2, device2), key
        assert torch.equal(value.view(-1).view(torch.uint8), value2.view(-1).view(torch.uint8)), key
