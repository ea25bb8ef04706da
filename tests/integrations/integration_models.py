"""Tiny models, data and oracles shared by the integration tests (random weights, CPU)."""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping

import torch
from torch import nn

from prunekit.apply.masks import masked_modules
from prunekit.targets import PRUNABLE_TYPES

NORMS = (nn.BatchNorm2d, nn.LayerNorm)


def tiny_net() -> nn.Sequential:
    """Conv + BatchNorm + Linear + LayerNorm: 36 + 1024 + 48 = 1108 prunable weights."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(64, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 3),
    )


def tiny_data(n: int = 32, seed: int = 0) -> torch.utils.data.TensorDataset:
    """``n`` random 1x6x6 images with labels in 0..2."""
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 1, 6, 6, generator=g),
                                          torch.randint(0, 3, (n,), generator=g))


def masks_of(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{key: bool mask}`` for every ``*_mask`` entry of a state dict."""
    return {k: v.bool().clone() for k, v in state.items() if k.endswith("_mask")}


def removed_fraction(masks: Mapping[str, torch.Tensor]) -> float:
    """Masked-out entries over all masked entries (the oracle for a global sparsity)."""
    total = sum(m.numel() for m in masks.values())
    return sum(int((~m).sum()) for m in masks.values()) / total if total else 0.0


def masked_names(model: nn.Module) -> set[str]:
    """``module.param`` of every masked parameter."""
    return {f"{name}.{param}" for name, _, param in masked_modules(model)}


def prunable_weights(model: nn.Module) -> set[str]:
    """``module.weight`` of every Linear / convolution layer (what prunekit may mask)."""
    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}


def bias_and_norm_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every bias and every norm layer's parameters and buffers."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, NORMS):
            found.update({f"{name}.{k}": v.detach().clone()
                          for k, v in module.state_dict().items()})
        elif getattr(module, "bias", None) is not None:
            found[f"{name}.bias"] = module.bias.detach().clone()
    return found


def hidden_values_are_zero(model: nn.Module) -> bool:
    """Every stored ``weight_orig`` entry behind a mask is exactly zero."""
    for _, module, param in masked_modules(model):
        orig, mask = getattr(module, f"{param}_orig"), getattr(module, f"{param}_mask")
        if bool((orig.detach()[~mask.bool()] != 0).any()):
            return False
    return True


def rss_after_gc() -> int:
    """Resident set size of this process in bytes, after a full garbage collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def live_tensors() -> int:
    """How many torch tensors the garbage collector can see."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))
