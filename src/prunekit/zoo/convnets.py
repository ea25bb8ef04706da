"""Small convolutional and MLP reference models."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register


@register("mlp", (1, 28, 28), description="784-256-128-10 MLP")
def mlp() -> nn.Module:
    """784-256-128-10 MLP for 1x28x28 inputs."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


class LeNet(nn.Module):
    """LeNet-style CNN for 1x28x28 inputs."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # (32, 14, 14)
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (64, 7, 7)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("lenet", (1, 28, 28), description="LeNet-style CNN, 28x28 grey inputs")
def lenet() -> nn.Module:
    """LeNet-style CNN for 1x28x28 inputs."""
    return LeNet()


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


@register("vgg", (3, 32, 32), description="VGG-style CNN with BatchNorm, 32x32 RGB")
def vgg() -> nn.Module:
    """VGG-style CNN with BatchNorm for 3x32x32 inputs."""
    return nn.Sequential(
        conv_bn_relu(3, 32), conv_bn_relu(32, 32), nn.MaxPool2d(2),    # (32, 16, 16)
        conv_bn_relu(32, 64), conv_bn_relu(64, 64), nn.MaxPool2d(2),   # (64, 8, 8)
        conv_bn_relu(64, 128), nn.AdaptiveAvgPool2d(1),                # (128, 1, 1)
        nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs + identity (or 1x1 downsample) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNet(nn.Module):
    """Small ResNet: 3x3 stem, stages of BasicBlocks, global pool, linear head."""

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, ...] = (16, 32, 64),
        blocks_per_stage: int = 1,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, widths[0])
        stages = []
        c_in = widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(c_in, width, stride)]
            blocks += [BasicBlock(width, width) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x)))  # (N, C, 1, 1)
        return self.fc(torch.flatten(x, 1))  # (N, num_classes)


@register("resnet", (3, 32, 32), description="small residual CNN (3 stages, 1 block each)")
def resnet() -> nn.Module:
    """Small ResNet (widths 16/32/64, one block a stage) for 3x32x32 inputs."""
    return ResNet()


@register(
    "fmnist_resnet",
    (1, 28, 28),
    description="ResNet for 28x28 Fashion-MNIST: widths 32/64/128, 2 blocks a stage (~0.7M)",
)
def fmnist_resnet() -> nn.Module:
    """ResNet for 1x28x28 Fashion-MNIST (widths 32/64/128, two blocks a stage)."""
    return ResNet(in_channels=1, widths=(32, 64, 128), blocks_per_stage=2)
