"""Small residual models for the depth tests (random weights, small inputs)."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.zoo.convnets import BasicBlock, conv_bn_relu

INPUT_SHAPE = (2, 3, 16, 16)
REMOVABLE = ["stages.0", "stages.1", "stages.2", "stages.4"]  # stages.3 downsamples


class TinyResNet(nn.Module):
    """Stem, three 8-wide blocks, a downsampling block, one 16-wide block, head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8)
        self.stages = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8), BasicBlock(8, 8),
                                    BasicBlock(8, 16, stride=2), BasicBlock(16, 16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def tiny_resnet(seed: int = 0) -> TinyResNet:
    """A :class:`TinyResNet` with seeded random weights and BatchNorm statistics."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TinyResNet()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                nn.init.uniform_(module.weight, 0.5, 1.5)
                nn.init.uniform_(module.bias, -0.1, 0.1)
    return model.eval()


def inputs(seed: int = 1, batch: int = INPUT_SHAPE[0]) -> torch.Tensor:
    """A seeded input batch for :class:`TinyResNet`."""
    return torch.randn((batch, *INPUT_SHAPE[1:]), generator=torch.Generator().manual_seed(seed))


def kill_branch(block: BasicBlock) -> None:
    """Zero the residual branch's last BatchNorm: the block then outputs relu(x) (= x after
    a ReLU), so removing it changes nothing."""
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
