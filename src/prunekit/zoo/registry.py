"""Name -> (factory, example-input maker) registry for the zoo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import TargetError


@dataclass(frozen=True)
class ZooEntry:
    """A registered model: how to build it and what one input batch looks like."""

    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one sample, without the batch dim
    input_dtype: torch.dtype = torch.float32
    vocab_size: int = 0  # for token inputs (int64)
    description: str = ""

    def example_inputs(self, batch: int = 2, seed: int = 0) -> torch.Tensor:
        """A seeded random batch: floats ~N(0, 1), or token ids below ``vocab_size``."""
        gen = torch.Generator().manual_seed(seed)
        if self.input_dtype == torch.long:
            return torch.randint(0, self.vocab_size, (batch, *self.input_shape), generator=gen)
        return torch.randn((batch, *self.input_shape), generator=gen)


_REGISTRY: dict[str, ZooEntry] = {}


def register(
    name: str,
    input_shape: tuple[int, ...],
    *,
    input_dtype: torch.dtype = torch.float32,
    vocab_size: int = 0,
    description: str = "",
) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator registering a zero-argument model factory under ``name``."""

    def wrap(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"zoo name {name!r} registered twice")
        _REGISTRY[name] = ZooEntry(name, factory, input_shape, input_dtype, vocab_size, description)
        return factory

    return wrap


def names() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def entry(name: str) -> ZooEntry:
    """The registered entry ``name`` (raises TargetError listing the names if unknown)."""
    if name not in _REGISTRY:
        raise TargetError(f"unknown zoo model {name!r}", f"choose one of: {', '.join(names())}")
    return _REGISTRY[name]


def build(name: str, seed: int = 0) -> nn.Module:
    """Build zoo model ``name`` with deterministic random init."""
    factory = entry(name).factory
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory()


def example_inputs(name: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A random input batch that zoo model ``name`` accepts."""
    return entry(name).example_inputs(batch, seed)
