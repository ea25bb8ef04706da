"""Shared helpers for the save / load tests."""

from __future__ import annotations

import torch
from torch import nn

import prunekit as pk
from prunekit.inputs import run_example


def outputs(model: nn.Module, x) -> list[torch.Tensor]:
    """The model's outputs in eval mode without gradients."""
    return run_example(model, x)


def assert_same_outputs(a: nn.Module, b: nn.Module, x) -> None:
    for left, right in zip(outputs(a, x), outputs(b, x), strict=True):
        assert torch.equal(left, right)


def masked_zoo(name: str, spec=None):
    """A masked zoo model (90% unstructured by default) and its inputs."""
    x = pk.zoo.example_inputs(name, 4)
    spec = spec or pk.Unstructured(sparsity=0.9)
    return pk.prune(pk.zoo.build(name), spec, x), x
