"""Small torchvision detectors for the detection tests (random weights, nothing downloaded).

The ResNet-50 models get ``FrozenBatchNorm2d`` with random statistics, as they have when
built on a pretrained backbone; the MobileNet and VGG ones keep their BatchNorm / no norm.
Few classes, few proposals and 64-pixel images keep every test quick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

tv = __import__("pytest").importorskip("torchvision")
D = tv.models.detection
FrozenBatchNorm2d = tv.ops.misc.FrozenBatchNorm2d

NO_WEIGHTS: dict[str, Any] = {"weights": None, "weights_backbone": None}
SIZE = 64
RCNN: dict[str, Any] = {"min_size": SIZE, "max_size": SIZE, "rpn_pre_nms_top_n_test": 50,
                        "rpn_post_nms_top_n_test": 20, "box_detections_per_img": 6}
ONE_STAGE: dict[str, Any] = {"min_size": SIZE, "max_size": SIZE, "detections_per_img": 6,
                             "topk_candidates": 20}
SSD: dict[str, Any] = {"detections_per_img": 6, "topk_candidates": 20}


def freeze_norms(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a FrozenBatchNorm2d holding the statistics of one batch
    of random images and a small random scale (so activations keep their scale, as in a
    trained network) and bias."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = 1.0
    model.eval()
    model.backbone.train()
    with torch.no_grad():
        batch, _ = model.transform(list(torch.rand(2, 3, SIZE, SIZE)))
        model.backbone(batch.tensors)
    generator = torch.Generator().manual_seed(1)
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.BatchNorm2d):
            continue
        n = module.num_features
        frozen = FrozenBatchNorm2d(n, eps=module.eps)
        frozen.weight.copy_(torch.rand(n, generator=generator) * 0.2 + 0.1)
        frozen.bias.copy_(torch.randn(n, generator=generator) * 0.1)
        frozen.running_mean.copy_(module.running_mean)
        frozen.running_var.copy_(module.running_var)
        model.set_submodule(name, frozen)
    return model


def _seeded(factory: Callable[[], nn.Module], frozen: bool) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        model = factory()
        return (freeze_norms(model) if frozen else model).eval()

    return build


CASES: dict[str, Callable[[], nn.Module]] = {
    "fasterrcnn_resnet50_fpn": _seeded(
        lambda: D.fasterrcnn_resnet50_fpn(**NO_WEIGHTS, num_classes=4, **RCNN), True),
    "fasterrcnn_mobilenet_v3_large_fpn": _seeded(
        lambda: D.fasterrcnn_mobilenet_v3_large_fpn(**NO_WEIGHTS, num_classes=4, **RCNN), False),
    "retinanet_resnet50_fpn": _seeded(
        lambda: D.retinanet_resnet50_fpn(**NO_WEIGHTS, num_classes=4, **ONE_STAGE), True),
    "fcos_resnet50_fpn": _seeded(
        lambda: D.fcos_resnet50_fpn(**NO_WEIGHTS, num_classes=4, **ONE_STAGE), True),
    "ssd300_vgg16": _seeded(lambda: D.ssd300_vgg16(**NO_WEIGHTS, num_classes=4, **SSD), False),
    "ssdlite320_mobilenet_v3_large": _seeded(
        lambda: D.ssdlite320_mobilenet_v3_large(**NO_WEIGHTS, num_classes=4, **SSD), False),
    "maskrcnn_resnet50_fpn": _seeded(
        lambda: D.maskrcnn_resnet50_fpn(**NO_WEIGHTS, num_classes=4, **RCNN), True),
    "keypointrcnn_resnet50_fpn": _seeded(
        lambda: D.keypointrcnn_resnet50_fpn(**NO_WEIGHTS, num_classes=2, num_keypoints=5,
                                            **RCNN), True),
}


def images(count: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return [torch.rand(3, SIZE, SIZE, generator=generator) for _ in range(count)]


HEADS = ("RPNHead", "FastRCNNPredictor", "MaskRCNNPredictor", "KeypointRCNNPredictor",
         "RetinaNetHead", "FCOSHead", "SSDHead", "SSDLiteHead")


@dataclass
class Observed:
    """One forward (eval, no grad): detections, what every prediction head returned, and the
    backbone (+FPN) feature maps."""

    detections: list[dict[str, torch.Tensor]]
    heads: dict[str, list[torch.Tensor]]
    features: dict[str, torch.Tensor]


def observe(model: nn.Module, batch: list[torch.Tensor]) -> Observed:
    heads: dict[str, list[torch.Tensor]] = {}
    features: dict[str, torch.Tensor] = {}
    handles = [model.backbone.register_forward_hook(
        lambda _m, _a, out: features.update(out))]
    for name, module in model.named_modules():
        if type(module).__name__ in HEADS:
            def keep(_m: nn.Module, _a: Any, out: Any, name: str = name) -> None:
                heads.setdefault(name, []).extend(flat(out))
            handles.append(module.register_forward_hook(keep))
    try:
        with torch.no_grad():
            detections = model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return Observed(detections, heads, features)


def flat(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key in sorted(value) for t in flat(value[key])]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in flat(item)]
    return []


def structure(detections: list[dict[str, torch.Tensor]]) -> list[dict[str, tuple[int, ...]]]:
    """Per image, each key's trailing shape (the number of boxes left out)."""
    return [{key: tuple(value.shape[1:]) for key, value in d.items()} for d in detections]
