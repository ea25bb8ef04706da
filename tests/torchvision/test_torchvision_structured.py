"""Structured pruning of the torchvision models listed in the structured-pruning issue.

Random weights (nothing is downloaded), small inputs where the architecture allows.
Per model: layer and global scope at 30% and 50% (outputs keep their shapes, gradients are
finite, parameters and MACs drop, an ignored layer keeps its values), round_to=8, exact
removal of dead channels (float64), and sparsity 0 as an exact no-op.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import pytest
import torch
from structured_oracles import check_pruned, dead_channel_equivalence, outputs
from torch import nn

import prunekit as pk
from prunekit.measure.counting import count_macs

tv = pytest.importorskip("torchvision")
M = tv.models

# name: (factory, input shape, a layer to ignore)
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], str]] = {
    "alexnet": (lambda: M.alexnet(), (1, 3, 64, 64), "features.3"),
    "vgg11_bn": (lambda: M.vgg11_bn(), (1, 3, 32, 32), "features.4"),
    "squeezenet1_1": (lambda: M.squeezenet1_1(), (1, 3, 64, 64), "features.3.squeeze"),
    "resnet18": (lambda: M.resnet18(), (1, 3, 64, 64), "layer2.0.conv1"),
    "resnet50": (lambda: M.resnet50(), (1, 3, 64, 64), "layer2.0.conv1"),
    "resnext50_32x4d": (lambda: M.resnext50_32x4d(), (1, 3, 64, 64), "layer2.0.conv2"),
    "wide_resnet50_2": (lambda: M.wide_resnet50_2(), (1, 3, 64, 64), "layer3.1.conv1"),
    "densenet121": (lambda: M.densenet121(), (1, 3, 64, 64), "features.denseblock1.denselayer2"),
    "googlenet": (lambda: M.googlenet(aux_logits=False, init_weights=True), (1, 3, 64, 64),
                  "inception3a.branch2"),
    "inception_v3": (lambda: M.inception_v3(aux_logits=False, init_weights=True),
                     (1, 3, 299, 299), "Mixed_5b.branch5x5_1"),
    "mobilenet_v2": (lambda: M.mobilenet_v2(), (1, 3, 64, 64), "features.3.conv.0"),
    "mobilenet_v3_small": (lambda: M.mobilenet_v3_small(), (1, 3, 64, 64), "features.4.block.2"),
    "mobilenet_v3_large": (lambda: M.mobilenet_v3_large(), (1, 3, 64, 64), "features.5.block.2"),
    "mnasnet1_0": (lambda: M.mnasnet1_0(), (1, 3, 64, 64), "layers.8.0.layers.0"),
    "efficientnet_b0": (lambda: M.efficientnet_b0(), (1, 3, 64, 64), "features.2.0.block.2"),
    "efficientnet_v2_s": (lambda: M.efficientnet_v2_s(), (1, 3, 64, 64), "features.4.0.block.2"),
    "regnet_x_400mf": (lambda: M.regnet_x_400mf(), (1, 3, 64, 64), "trunk_output.block2.block2-0.f.a"),
    "regnet_y_400mf": (lambda: M.regnet_y_400mf(), (1, 3, 64, 64), "trunk_output.block2.block2-0.f.se"),
    "convnext_tiny": (lambda: M.convnext_tiny(), (1, 3, 64, 64), "features.1.0.block.3"),
    "vit_b_16": (lambda: M.vit_b_16(), (1, 3, 224, 224), "encoder.layers.encoder_layer_3.mlp"),
    "swin_t": (lambda: M.swin_t(), (1, 3, 64, 64), "features.1.0.mlp"),
    "swin_v2_t": (lambda: M.swin_v2_t(), (1, 3, 64, 64), "features.3.0.mlp"),
    "maxvit_t": (lambda: M.maxvit_t(), (1, 3, 224, 224), "blocks.0.layers.0.layers.MBconv.layers.squeeze_excitation"),
    "shufflenet_v2_x1_0": (lambda: M.shufflenet_v2_x1_0(), (1, 3, 64, 64), "stage2.0.branch1"),
    "r3d_18": (lambda: M.video.r3d_18(), (1, 3, 4, 32, 32), "layer2.0.conv1"),
    "fcn_resnet50": (lambda: M.segmentation.fcn_resnet50(weights=None, weights_backbone=None),
                     (1, 3, 64, 64), "backbone.layer2.0.conv1"),
    "deeplabv3_mobilenet_v3_large": (
        lambda: M.segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None),
        (1, 3, 64, 64), "backbone.4.block.0"),
}
NAMES = list(CASES)
CHECKS = ["0.3-layer", "0.5-layer", "0.3-global", "0.5-global", "round_to_8", "dead_channels",
          "sparsity_0"]


@functools.lru_cache(maxsize=1)
def reference(name: str) -> tuple[nn.Module, torch.Tensor, list[torch.Tensor], int]:
    """Model, input, outputs and MACs, built once per model (tests never mutate the model)."""
    factory, shape, _ = CASES[name]
    torch.manual_seed(0)
    model, x = factory().eval(), torch.randn(shape)
    return model, x, outputs(model, x), count_macs(model, x)


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("name", NAMES)
def test_torchvision(name: str, check: str) -> None:
    model, x, before, macs = reference(name)
    if check == "dead_channels":
        assert dead_channel_equivalence(copy.deepcopy(model), x) > 0
    elif check == "sparsity_0":
        result = pk.prune(model, pk.Structured(sparsity=0.0), x)
        want, have = model.state_dict(), result.model.state_dict()
        assert all(torch.equal(want[k], have[k]) for k in want)
        for a, b in zip(before, outputs(result.model, x), strict=True):
            assert torch.equal(a, b)
    elif check == "round_to_8":
        check_pruned(model, x, pk.Structured(sparsity=0.5, round_to=8), [],
                     reference=(before, macs))
    else:
        sparsity, scope = check.split("-")
        spec = pk.Structured(sparsity=float(sparsity), scope=scope)  # type: ignore[arg-type]
        check_pruned(model, x, spec, [CASES[name][2]], reference=(before, macs))
