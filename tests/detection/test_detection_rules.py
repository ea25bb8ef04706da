"""Coupling rules behind detector pruning, and the inputs that are refused.

Small modules reproduce each pattern of a detector (RoI pooling into a preallocated tensor,
zero boxes, argmax outputs, frozen norms); the zero-detection case runs on Mask R-CNN.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from detection_models import CASES, NO_WEIGHTS, RCNN, D, images, structure
from torch import nn

import prunekit as pk
from prunekit.detection import every_candidate, prune_detector, settings
from prunekit.errors import ExampleInputError, UnsupportedModelError
from prunekit.graph.groups import analyze
from prunekit.graph.state import NORM

tv = pytest.importorskip("torchvision")


class RoiNet(nn.Module):
    """conv -> RoI align per level written into ``result[idx]`` -> conv, as in Mask R-CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        feature = torch.relu(self.stem(x))
        result = feature.new_zeros((boxes.size(0), feature.size(1), 4, 4))
        for level in range(2):
            idx = torch.where(boxes[:, 0] % 2 == level)[0]
            rois = torch.cat([torch.zeros(len(idx), 1), boxes[idx, 1:]], dim=1)
            result[idx] = tv.ops.roi_align(feature, rois, (4, 4))
        return self.out(torch.relu(self.head(result)))


def _boxes(count: int) -> torch.Tensor:
    return torch.tensor([[i, 1.0, 1.0, 12.0, 12.0] for i in range(count)]).reshape(-1, 5)


@pytest.mark.parametrize("count", [0, 3])
def test_roi_pooled_channels_follow_the_pruned_features(count: int) -> None:
    """Traced on zero or three boxes, the head's input follows the stem's kept channels: the
    pruned model runs on four boxes and equals the dense one with the removed channels zeroed
    (float64, 1e-9)."""
    torch.manual_seed(0)
    model, x = RoiNet().double().eval(), torch.rand(1, 3, 16, 16, dtype=torch.float64)
    result = pk.prune(model, pk.Structured(sparsity=0.5), (x, _boxes(count).double()))
    assert result.model.head.in_channels == len(result.plan.kept["stem.weight"][0]) == 8
    dense = copy.deepcopy(model)
    with torch.no_grad():
        for layer in (dense.stem, dense.head):
            kept = result.plan.kept[f"{'stem' if layer is dense.stem else 'head'}.weight"][0]
            removed = [c for c in range(layer.out_channels) if c not in kept]
            layer.weight[removed] = 0
            layer.bias[removed] = 0
        boxes = _boxes(4).double()
        torch.testing.assert_close(result.model(x, boxes), dense(x, boxes), atol=1e-9, rtol=0)


class Overwrite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        y[:, :2] = 0  # fixed channel positions: cannot follow pruning
        return self.b(y)


def test_writing_at_fixed_channel_positions_pins_those_channels() -> None:
    analysis = analyze(Overwrite().eval(), torch.rand(1, 3, 4, 4))
    assert bool(analysis.frozen.all())


class ArgmaxNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))).argmax(-1)


def test_argmax_output_keeps_the_classes() -> None:
    result = pk.prune(ArgmaxNet(), pk.Structured(sparsity=0.5), torch.randn(4, 8))
    assert result.model.b.out_features == 5
    assert result.model.a.out_features == 8


class ScaledVector(nn.Module):
    """A 0-d value from a channel times a vector without channels (Keypoint R-CNN does it)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.b(torch.relu(self.a(x)))
        return y, torch.arange(3.0) * y[0, 0]


def test_zero_dim_channel_value_times_a_vector_traces() -> None:
    result = pk.prune(ScaledVector(), pk.Structured(sparsity=0.5), torch.randn(2, 4))
    assert result.model.a.out_features == 3
    assert result.model.b.out_features == 3


def _frozen_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = tv.models.resnet18(norm_layer=tv.ops.misc.FrozenBatchNorm2d, num_classes=4).eval()
    for module in model.modules():
        if isinstance(module, tv.ops.misc.FrozenBatchNorm2d):
            module.weight.uniform_(0.1, 1.0)
            module.bias.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model


def test_frozen_batchnorm_is_coupled_like_batchnorm() -> None:
    """Its four buffers are norm dims of the channels they scale, so ``bn_scale`` keeps the
    channels with the largest ``|weight|``, and removing channels drops the buffers' entries."""
    model, x = _frozen_resnet(), torch.rand(1, 3, 32, 32)
    roles = {m.key: m.role for m in analyze(model, x).members if ".bn1." in m.key}
    assert roles["layer1.0.bn1.running_var"] == NORM and roles["layer1.0.bn1.weight"] == NORM
    result = pk.prune(model, pk.Structured(sparsity=0.5, importance="bn_scale"), x)
    gamma = model.layer1[0].bn1.weight.abs()
    kept = result.plan.kept["layer1.0.conv1.weight"][0]
    assert sorted(kept) == sorted(gamma.argsort(descending=True)[:len(kept)].tolist())
    assert result.model.layer1[0].bn1.running_mean.shape == (len(kept),)
    assert result.model(x).shape == (1, 4)


@dataclasses.dataclass
class Output:
    logits: torch.Tensor


class Wrapped(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> object:
        y = self.b(torch.relu(self.a(x)))
        return {"dataclass": Output(y), "nested": {"y": [y, Output(y)]}, "none": None,
                "text": "done"}[self.kind]


@pytest.mark.parametrize(("kind", "named"), [("dataclass", "output is of type Output"),
                                             ("nested", "output['y'][1] is of type Output"),
                                             ("none", "output is of type NoneType"),
                                             ("text", "output is of type str")])
def test_outputs_the_trace_cannot_see_are_refused_untouched(kind: str, named: str) -> None:
    model = Wrapped(kind)
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(UnsupportedModelError, match=named.replace("[", r"\[").replace("]", r"\]")):
        pk.prune(model, pk.Structured(sparsity=0.5), torch.randn(2, 8), inplace=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_prune_detector_refuses_bad_inputs_before_touching_the_model() -> None:
    model = CASES["ssdlite320_mobilenet_v3_large"]()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(UnsupportedModelError, match="torchvision detection model"):
        prune_detector(nn.Linear(2, 2), pk.Structured(sparsity=0.3), images())
    with pytest.raises(ExampleInputError, match=r"images\[0\] is a 2-d"):
        prune_detector(model, pk.Structured(sparsity=0.3), [torch.rand(64, 64)], inplace=True)
    with pytest.raises(ExampleInputError, match="non-empty list"):
        prune_detector(model, pk.Structured(sparsity=0.3), torch.rand(3, 64, 64), inplace=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_training_mode_detector_is_pruned_in_eval_mode_and_keeps_its_mode() -> None:
    """prunekit runs the model in eval mode (no targets needed); modes are restored."""
    model = CASES["ssdlite320_mobilenet_v3_large"]().train()
    result = prune_detector(model, pk.Structured(sparsity=0.3), images())
    assert model.training and result.model.training
    assert all(m.training for m in result.model.modules())
    with pytest.raises((AssertionError, ValueError), match="targets"):
        result.model(images())  # torchvision's own check, training mode without targets


@pytest.mark.slow
def test_zero_detections_while_tracing_still_couple_the_mask_head() -> None:
    """pk.prune directly, on a Mask R-CNN returning no box (score threshold above 1): the mask
    head runs on zero boxes, is still coupled and pruned, and the pruned model runs on boxes."""
    torch.manual_seed(0)
    model = D.maskrcnn_resnet50_fpn(**NO_WEIGHTS, num_classes=4, box_score_thresh=1.1,
                                    **RCNN).eval()
    batch = images()
    with torch.no_grad():
        assert len(model(batch)[0]["boxes"]) == 0
    result = pk.prune(model, pk.Structured(sparsity=0.3), (batch,))
    pruned = result.model
    assert any(isinstance(m, nn.Conv2d) and m.out_channels < 256
               for m in pruned.roi_heads.mask_head.modules())
    with every_candidate(model), every_candidate(pruned), torch.no_grad():
        dense, after = model(batch), pruned(batch)
    assert len(after[0]["masks"]) > 0
    assert structure(after) == structure(dense)
    assert settings(pruned) == settings(model)
