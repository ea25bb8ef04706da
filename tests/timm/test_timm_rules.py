"""Coupling rules met in timm models, each on a small module built like the timm original.

Per module: pruning at 0.5 keeps output shapes and shrinks the model, the width attribute
the forward reads follows the pruned width, ``pk.save`` / ``pk.load`` restores it, and
removing zeroed channels changes no output (float64, tolerance 1e-5).
"""

from __future__ import annotations

import copy

import torch
from structured_oracles import check_result, check_save_load, dead_channel_equivalence
from torch import nn

import prunekit as pk
from prunekit.graph.groups import analyze

X = torch.randn(2, 8, 6, 6)


class Affine(nn.Module):
    """timm's ``LearnableAffineBlock``: one learnable scale and bias for all channels."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.5]))
        self.bias = nn.Parameter(torch.tensor([0.1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias


class CrossStage(nn.Module):
    """timm's CSP ``CrossStage``: ``x.split(self.expand_chs // 2, dim=1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.expand_chs = 16
        self.conv_exp = nn.Conv2d(8, 16, 1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.conv_out = nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs, xb = self.conv_exp(x).split(self.expand_chs // 2, dim=1)
        return self.conv_out(torch.cat([self.block(xb), xs], dim=1))


class MixedConv(nn.Module):
    """timm's ``MixedConv2d``: unequal parts ``torch.split(x, self.splits, 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.splits = [4, 12]
        self.convs = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1, groups=4),
                                    nn.Conv2d(12, 12, 5, padding=2, groups=12)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.splits, 1)
        return torch.cat([conv(part) for conv, part in zip(self.convs, parts, strict=True)], 1)


class Scale(nn.Module):
    """timm's MetaFormer ``Scale``: ``x * self.scale.view(self.shape)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.shape = (dim, 1, 1)
        self.scale = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(self.shape)


class SelectiveKernel(nn.Module):
    """timm's ``SelectiveKernel``: branches stacked on dim 1, weighted, summed over it."""

    def __init__(self) -> None:
        super().__init__()
        self.paths = nn.ModuleList([nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(8, 16, 1)])
        self.select = nn.Conv2d(16, 32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([path(x) for path in self.paths], dim=1)  # (B, 2, C, H, W)
        attn = self.select(stacked.sum(1).mean((2, 3), keepdim=True))
        attn = attn.view(x.shape[0], 2, attn.shape[1] // 2, 1, 1).softmax(dim=1)
        return (stacked * attn).sum(1)


class MixerBlock(nn.Module):
    """MLP-Mixer: a Linear over the tokens (``x.transpose(1, 2)``), then one over channels."""

    def __init__(self, tokens: int = 36, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.tokens = nn.Linear(tokens, tokens)
        self.fc1, self.fc2 = nn.Linear(dim, 32), nn.Linear(32, dim)
        self.head = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x.flatten(2).transpose(1, 2))  # (B, tokens, dim)
        x = x + self.tokens(x.transpose(1, 2)).transpose(1, 2)
        x = x + self.fc2(torch.relu(self.fc1(x)))
        return self.head(x.mean(1))


class Attention(nn.Module):
    """timm's ``Attention``: heads merged back with ``reshape(B, N, self.attn_dim)``; the
    input read as ``x.reshape(B, N, self.dim)``; as many heads as each head's size."""

    def __init__(self, dim: int = 12, attn_dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, attn_dim // heads
        self.attn_dim, self.dim = attn_dim, dim
        self.qkv, self.proj = nn.Linear(dim, 3 * attn_dim), nn.Linear(attn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        x = x.reshape(B, N, self.dim)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, self.attn_dim))


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.attn, self.head = nn.Linear(8, 12), Attention(), nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(self.embed(x.flatten(2).transpose(1, 2))).mean(1))


def _tail(width: int) -> list[nn.Module]:
    return [nn.ReLU(), nn.Conv2d(width, 4, 1)]


def _prunes(model: nn.Module, tmp_path) -> pk.PruneResult:
    """The shared checks; returns the result of pruning at 0.5."""
    result = check_result(model, X, pk.Structured(sparsity=0.5), [])
    check_save_load(result, lambda: copy.deepcopy(model), X, tmp_path / "pruned")
    assert dead_channel_equivalence(copy.deepcopy(model), X) > 0
    return result


def test_a_shared_scalar_scale_does_not_tie_the_channels_together(tmp_path) -> None:
    model = nn.Sequential(nn.Conv2d(8, 16, 3), Affine(), *_tail(16))
    assert analyze(model, X).groups[0].size == 16  # one channel per filter, not one in all
    result = _prunes(model, tmp_path)
    assert result.model[0].out_channels == 8
    assert result.model[1].scale.shape == (1,)


def test_a_split_by_a_width_attribute_follows_the_pruned_width(tmp_path) -> None:
    model = nn.Sequential(nn.Conv2d(8, 8, 1), CrossStage())
    result = _prunes(model, tmp_path)
    stage = result.model[1]
    assert stage.conv_exp.out_channels == stage.expand_chs == 8
    assert result.plan.attributes["1"]["expand_chs"] == 8


def test_unequal_parts_named_by_a_list_attribute_are_pruned_each_on_its_own(tmp_path) -> None:
    model = nn.Sequential(nn.Conv2d(8, 16, 1), MixedConv(), *_tail(16))
    result = _prunes(model, tmp_path)
    mixed = result.model[1]
    assert mixed.splits == [conv.out_channels for conv in mixed.convs]
    assert sum(mixed.splits) == result.model[0].out_channels < 16
    assert min(mixed.splits) >= 1


def test_a_shape_attribute_of_a_view_follows_the_pruned_width(tmp_path) -> None:
    model = nn.Sequential(nn.Conv2d(8, 16, 3), Scale(16), *_tail(16))
    result = _prunes(model, tmp_path)
    assert result.model[1].shape == (8, 1, 1)
    assert isinstance(result.model[1].shape, tuple)


def test_stacked_branches_summed_over_the_stack_dim_are_pruned_together(tmp_path) -> None:
    model = nn.Sequential(SelectiveKernel(), *_tail(16))
    result = _prunes(model, tmp_path)
    block = result.model[0]
    assert block.paths[0].out_channels == block.paths[1].out_channels == 8


def test_a_linear_over_tokens_lets_the_channels_through(tmp_path) -> None:
    model = MixerBlock()
    result = _prunes(model, tmp_path)
    assert result.model.tokens.weight.shape == (36, 36)  # token counts stay
    assert result.model.fc1.out_features == 16 and result.model.embed.out_features < 16


def test_an_attention_width_attribute_follows_the_pruned_heads(tmp_path) -> None:
    result = _prunes(Tokens(), tmp_path)
    attn = result.model.attn
    assert attn.num_heads == 2 and attn.head_dim == 4 and attn.attn_dim == 8
    assert attn.dim == result.model.embed.out_features == 6
