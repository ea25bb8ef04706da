"""Coupling rules, one behaviour per test: what the analysis groups together."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import prunekit as pk
from prunekit.graph.groups import Analysis, analyze


def member(analysis: Analysis, key: str, dim: int) -> torch.Tensor:
    found = [m.channel for m in analysis.members if m.key == key and m.dim == dim]
    assert found, f"{key} dim {dim} is not coupled"
    return found[0]


def test_residual_add_unites_both_branches() -> None:
    model = pk.zoo.build("resnet")
    a = analyze(model, pk.zoo.example_inputs("resnet"))
    main = member(a, "stages.1.0.bn2.weight", 0)
    short = member(a, "stages.1.0.downsample.0.weight", 0)
    consumer = member(a, "stages.2.0.conv1.weight", 1)
    assert torch.equal(main, short) and torch.equal(main, consumer)


def test_concat_gives_offsets() -> None:
    model = pk.zoo.build("densenet_block")
    a = analyze(model, pk.zoo.example_inputs("densenet_block"))
    stem = member(a, "stem.weight", 0)  # 16 channels
    growth = member(a, "dense.0.conv.weight", 0)  # 12 channels
    reader = member(a, "dense.1.conv.weight", 1)  # reads cat(stem, growth)
    assert torch.equal(reader, torch.cat([stem, growth]))


def test_flatten_into_linear_maps_each_channel_to_its_block() -> None:
    model = pk.zoo.build("lenet")
    a = analyze(model, pk.zoo.example_inputs("lenet"))
    conv = member(a, "features.3.weight", 0)  # 64 channels of 7x7
    linear_in = member(a, "classifier.1.weight", 1)  # 3136 features
    assert torch.equal(linear_in, conv.repeat_interleave(49))


def test_chunk_and_shuffle_keep_parts_even() -> None:
    model = pk.zoo.build("shufflenet_block")
    x = pk.zoo.example_inputs("shufflenet_block")
    result = pk.prune(model, pk.Structured(sparsity=0.5), x)
    first, *rest = list(result.model)[1:4]
    assert first.branch1[2].out_channels == first.branch2[5].out_channels  # equal halves
    for unit in rest:  # chunk halves and the branch output must stay equal for the shuffle
        assert unit.branch2[0].in_channels == unit.branch2[5].out_channels
    assert sum(p.numel() for p in result.model.parameters()) < sum(
        p.numel() for p in model.parameters()
    )
    assert result.model(x).shape == (2, 10)


def test_depthwise_conv_loses_whole_groups() -> None:
    model = pk.zoo.build("mobilenet_dw")
    result = pk.prune(model, pk.Structured(sparsity=0.5), pk.zoo.example_inputs("mobilenet_dw"))
    for module in result.model.modules():
        if isinstance(module, nn.Conv2d) and module.groups > 1:
            assert module.groups == module.in_channels == module.out_channels
            assert module.weight.shape[1] == 1


def test_heads_removed_whole_and_num_heads_updated() -> None:
    model = pk.zoo.build("gpt_block")
    result = pk.prune(model, pk.Structured(sparsity=0.5), pk.zoo.example_inputs("gpt_block"))
    attn = result.model.blocks[0].attn
    assert attn.num_heads == 2 and attn.head_dim == 12
    assert attn.q_proj.out_features == attn.k_proj.out_features == 24
    assert attn.out_proj.in_features == 24
    assert result.plan.attributes["blocks.0.attn"]["num_heads"] == 2


def test_multihead_attention_module_is_left_whole() -> None:
    model = pk.zoo.build("mha_encoder")
    result = pk.prune(model, pk.Structured(sparsity=0.5), pk.zoo.example_inputs("mha_encoder"))
    attn = result.model.attn
    assert attn.in_proj_weight.shape == (96, 32) and attn.out_proj.weight.shape == (32, 32)
    assert result.model.fc1.out_features == 32  # the MLP hidden width is pruned


def test_output_width_is_frozen() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5))
    result = pk.prune(model, pk.Structured(sparsity=0.5), torch.randn(2, 4))
    assert result.model[2].out_features == 5 and result.model[0].out_features == 4


class SwiGLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 32)
        self.down = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.up(x).chunk(2, dim=-1)
        return x + self.down(a * F.silu(b))


def test_chunked_gate_prunes_matching_positions() -> None:
    model = nn.Sequential(SwiGLU(), nn.Linear(8, 2))
    x = torch.randn(3, 8)
    a = analyze(model, x)
    up = member(a, "0.up.weight", 0)
    assert torch.equal(up[:16], up[16:])  # a[i] and b[i] are one channel
    result = pk.prune(model, pk.Structured(sparsity=0.5), x)
    assert result.model[0].up.out_features == 16 and result.model[0].down.in_features == 8


class LayerTypes(nn.Module):
    """Conv1d, GroupNorm, PReLU, ConvTranspose1d, InstanceNorm1d, Conv3d, Embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.act = nn.PReLU(16)
        self.up = nn.ConvTranspose1d(16, 12, 2, stride=2)
        self.inorm = nn.InstanceNorm1d(12, affine=True)
        self.head = nn.Conv1d(12, 3, 1)
        self.embed = nn.Embedding(10, 6)
        self.vol = nn.Conv3d(6, 8, 1)
        self.vol_head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.head(self.inorm(self.up(self.act(self.gn(self.conv(x))))))
        v = self.embed(tokens).permute(0, 2, 1)[..., None, None]  # (N, 6, T, 1, 1)
        return y, self.vol_head(self.vol(v).mean(dim=(2, 3, 4)))


def test_every_layer_type_handler() -> None:
    model = LayerTypes()
    inputs = (torch.randn(2, 4, 8), torch.randint(0, 10, (2, 5)))
    result = pk.prune(model, pk.Structured(sparsity=0.5), inputs)
    m = result.model
    assert m.conv.out_channels == m.gn.num_channels == m.act.num_parameters == 8
    assert m.gn.num_groups == 4
    assert m.up.in_channels == 8 and m.up.out_channels == m.inorm.num_features == 6
    assert m.embed.embedding_dim == 3 and m.vol.in_channels == 3 and m.vol.out_channels == 4
    y, v = m(*inputs)
    assert y.shape == (2, 3, 16) and v.shape == (2, 2)


def test_overrides_set_a_layer_sparsity() -> None:
    model, x = pk.zoo.build("vgg"), pk.zoo.example_inputs("vgg")
    result = pk.prune(model, pk.Structured(sparsity=0.5), x, overrides={"0.0": 0.25})
    assert result.model[0][0].out_channels == 24  # 25% of 32 removed
    assert result.model[1][0].out_channels == 16  # the default 50%


def test_output_layer_keeps_width_and_the_values_of_kept_inputs() -> None:
    model, x = pk.zoo.build("resnet"), pk.zoo.example_inputs("resnet")
    result = pk.prune(model, pk.Structured(sparsity=0.5), x)
    fc = result.model.fc
    kept = result.plan.kept["fc.weight"][1]
    assert fc.out_features == 10 and fc.in_features == len(kept) == 32
    assert torch.equal(fc.weight.detach(), model.fc.weight.detach()[:, kept])
    assert torch.equal(fc.bias.detach(), model.fc.bias.detach())
