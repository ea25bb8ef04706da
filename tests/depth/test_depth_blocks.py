"""Which modules are removable residual blocks (torch.fx residual check + one probe run)."""

from __future__ import annotations

import pytest
import torch
from depth_models import REMOVABLE, inputs, tiny_resnet
from torch import nn

import prunekit as pk
from prunekit.depth import find_blocks
from prunekit.depth.residual import residual_reason


def test_tiny_resnet_blocks_without_downsampling_are_removable() -> None:
    found = find_blocks(tiny_resnet(), inputs())
    assert found.names == REMOVABLE
    assert "differs from its input" in found.reasons["stages.3"]
    assert "container" in found.reasons["stages"]


def test_ignored_blocks_are_not_candidates() -> None:
    found = find_blocks(tiny_resnet(), inputs(), ["stages.1.conv2"])
    assert found.names == ["stages.0", "stages.2", "stages.4"]
    assert found.reasons["stages.1"] == "ignored"


def test_torchvision_basic_block_and_bottleneck_are_removable() -> None:
    models = pytest.importorskip("torchvision.models.resnet")
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                          models.BasicBlock(16, 16), models.Bottleneck(16, 4),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3)).eval()
    assert find_blocks(model, torch.randn(1, 3, 8, 8)).names == ["2", "3"]


def test_prenorm_transformer_blocks_in_a_sequential_are_removable() -> None:
    found = find_blocks(pk.zoo.build("vit_block"), pk.zoo.example_inputs("vit_block"))
    assert found.names == ["blocks.0", "blocks.1"]
    listed = find_blocks(pk.zoo.build("transformer"), pk.zoo.example_inputs("transformer"))
    assert listed.names == [] and "nn.Sequential" in listed.reasons["blocks.0"]


class Scaled(nn.Module):
    """``2 * x + f(x)``: not a residual block (removal is not input + 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x + self.conv(x)


class PostNorm(nn.Module):
    """``norm(x + f(x))``: the addition is not the output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.fc(x))


@pytest.mark.parametrize("module", [Scaled(), PostNorm(), nn.Conv2d(4, 4, 3, padding=1)])
def test_non_residual_modules_are_refused(module: nn.Module) -> None:
    assert residual_reason(module) == "its output is not its input plus a branch computed from it"
