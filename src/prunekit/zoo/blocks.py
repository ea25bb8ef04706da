"""Small models built from the blocks structured pruning must couple correctly.

DenseNet concat, ShuffleNet chunk + channel shuffle, MobileNet depthwise separable convs,
inverted residual with squeeze-excitation, a ViT-style and a GPT-style (causal) transformer,
and an encoder using ``nn.MultiheadAttention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .convnets import conv_bn_relu
from .registry import register
from .transformers import EncoderBlock


class DenseLayer(nn.Module):
    """BN-ReLU-conv producing ``growth`` channels, concatenated to its input."""

    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(F.relu(self.bn(x)))], dim=1)  # (N, c_in + growth, H, W)


class DenseNetLike(nn.Module):
    def __init__(self, growth: int = 12, layers: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        c = 16
        dense = []
        for _ in range(layers):
            dense.append(DenseLayer(c, growth))
            c += growth
        self.dense = nn.Sequential(*dense)
        self.transition = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)
        )
        self.norm = nn.BatchNorm2d(c // 2)
        self.fc = nn.Linear(c // 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.transition(self.dense(self.stem(x)))
        x = F.adaptive_avg_pool2d(F.relu(self.norm(x)), 1).flatten(1)  # (N, C)
        return self.fc(x)


@register("densenet_block", (3, 32, 32), description="DenseNet-style concat block + transition")
def densenet_block() -> nn.Module:
    return DenseNetLike()


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()  # (N, C/g, g, H, W)
    return x.view(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet-v2 unit: split in two (stride 1) or two branches (stride 2), shuffle."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = c_out // 2
        branch_in = c_in if stride > 1 else c_in // 2
        self.branch2 = nn.Sequential(
            nn.Conv2d(branch_in, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
        )
        self.branch1: nn.Module = nn.Identity()
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
                nn.Conv2d(c_in, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


@register("shufflenet_block", (3, 32, 32), description="ShuffleNet-v2-style chunk + shuffle")
def shufflenet_block() -> nn.Module:
    return nn.Sequential(
        conv_bn_relu(3, 24, stride=2),
        ShuffleUnit(24, 48, 2), ShuffleUnit(48, 48, 1), ShuffleUnit(48, 48, 1),
        nn.Conv2d(48, 64, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def depthwise_separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
        nn.ReLU6(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU6(),
    )


@register("mobilenet_dw", (3, 32, 32), description="MobileNet-v1-style depthwise separable")
def mobilenet_dw() -> nn.Module:
    return nn.Sequential(
        conv_bn_relu(3, 16), depthwise_separable(16, 32, 1), depthwise_separable(32, 64, 2),
        depthwise_separable(64, 64, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(self.fc2(F.silu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * scale  # (N, C, H, W) * (N, C, 1, 1)


class InvertedResidual(nn.Module):
    """MBConv: expand 1x1, depthwise 3x3, squeeze-excitation, project 1x1, residual add."""

    def __init__(self, channels: int, expand: int = 4) -> None:
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False),
                                    nn.BatchNorm2d(hidden), nn.SiLU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.SiLU(),
        )
        self.se = SqueezeExcite(hidden, max(channels // 4, 4))
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False),
                                     nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.se(self.depthwise(self.expand(x))))


@register("inverted_residual_se", (3, 32, 32),
          description="MobileNet-v3 / EfficientNet-style inverted residual with SE")
def inverted_residual_se() -> nn.Module:
    return nn.Sequential(
        conv_bn_relu(3, 16, stride=2), InvertedResidual(16), InvertedResidual(16),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


class ViTLike(nn.Module):
    """Patch conv + class token + learned positions + pre-norm blocks + class-token head."""

    def __init__(self, dim: int = 48, heads: int = 4, depth: int = 2, patch: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 1 + (32 // patch) ** 2, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, dim * 2) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (N, T, D)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


@register("vit_block", (3, 32, 32), description="ViT-style: patches, class token, 2 blocks")
def vit_block() -> nn.Module:
    return ViTLike()


class GPTLike(nn.Module):
    """Causal decoder: tokens + positions, causal pre-norm blocks, LM head over the vocab."""

    def __init__(self, vocab: int = 96, dim: int = 48, heads: int = 4, depth: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(32, dim)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, dim * 4, causal=True)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.pos(positions)  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm(x))  # (B, T, vocab)


@register("gpt_block", (16,), input_dtype=torch.long, vocab_size=96,
          description="GPT-style causal decoder (2 blocks, 4 heads), token inputs")
def gpt_block() -> nn.Module:
    return GPTLike()


class MHAEncoder(nn.Module):
    """Encoder layer on nn.MultiheadAttention (packed in-projection) + MLP + mean-pool head."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(8, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln1 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * 2)
        self.fc2 = nn.Linear(dim * 2, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)  # (B, T, D)
        x = self.ln1(x + self.attn(x, x, x, need_weights=False)[0])
        x = self.ln2(x + self.fc2(F.gelu(self.fc1(x))))
        return self.head(x.mean(dim=1))


@register("mha_encoder", (12, 8), description="encoder layer using nn.MultiheadAttention")
def mha_encoder() -> nn.Module:
    return MHAEncoder()
