"""The timm architectures of the structured-pruning matrix: how each is built and what is
expected of it (pruned, or refused before any change with a typed error naming a module).

Small variants at small inputs (random weights, nothing downloaded). Shared by
``tests/timm`` and ``benchmarks/timm_matrix.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Case:
    """One architecture: timm name, build arguments, input side, expected outcome."""

    family: str
    name: str
    size: int = 64
    kwargs: dict[str, Any] = field(default_factory=dict)
    refused: tuple[str, str] | None = None  # (error class name, module named) if refused
    reason: str = ""  # why it is refused
    slow: bool = False
    exact: bool = True  # has a width outside LayerNorm / GroupNorm (dead-channel check)

    def build(self) -> nn.Module:
        import timm

        torch.manual_seed(0)
        return timm.create_model(self.name, pretrained=False, num_classes=10,
                                 **self.kwargs).eval()

    def inputs(self) -> torch.Tensor:
        return torch.randn(1, 3, self.size, self.size, generator=torch.Generator().manual_seed(0))


IMG64 = {"img_size": 64}
NF_REASON = ("weight-standardised convs (ScaledStdConv2d) compute their weight in forward: "
             "removing an input channel would change every filter's statistics")

CASES: list[Case] = [
    Case("ResNet-T", "resnet10t"),
    Case("ResNet-D", "resnet18d"),
    Case("ResNeXt", "resnext26ts"),
    Case("SE-ResNeXt", "seresnext26d_32x4d"),
    Case("Res2Net", "res2net50_14w_8s", slow=True),
    Case("SKNet", "skresnet18"),
    Case("RegNetX", "regnetx_002"),
    Case("RegNetY", "regnety_002"),
    Case("EfficientNet", "efficientnet_b0"),
    Case("TinyNet", "tinynet_e"),
    Case("MixNet", "mixnet_s", slow=True),
    Case("FBNet", "fbnetc_100"),
    Case("MobileNetV3", "mobilenetv3_small_050"),
    Case("MobileNetV4", "mobilenetv4_conv_small"),
    Case("LCNet", "lcnet_050"),
    Case("GhostNet", "ghostnet_050", slow=True),
    Case("RepVGG", "repvgg_a0"),
    Case("HGNetV2", "hgnetv2_b0"),
    Case("DenseNet", "densenet121", slow=True),
    Case("DLA", "dla46_c"),
    Case("DPN", "dpn68", slow=True),
    Case("HRNet", "hrnet_w18_small", slow=True),
    Case("Xception", "xception41", slow=True),
    Case("VoVNet", "ese_vovnet19b_dw"),
    Case("CSPDarknet", "cs3darknet_focus_s"),
    Case("NFNet (NF-ResNet)", "nf_resnet26", refused=("UnsupportedModelError", "stem.conv"),
         reason=NF_REASON),
    Case("NF-RegNet", "nf_regnet_b0", refused=("UnsupportedModelError", "stem.conv"),
         reason=NF_REASON),
    Case("ConvNeXt", "convnext_atto"),
    Case("InceptionNeXt", "inception_next_atto"),
    Case("StarNet", "starnet_s1"),
    Case("PoolFormer", "poolformer_s12"),
    Case("PoolFormerV2", "poolformerv2_s12"),
    Case("ViT", "vit_tiny_patch16_224", kwargs=IMG64),
    Case("DeiT", "deit_tiny_patch16_224", kwargs=IMG64),
    Case("CaiT", "cait_xxs24_224", kwargs=IMG64, slow=True),
    Case("PiT", "pit_ti_224", kwargs=IMG64),
    Case("ConViT", "convit_tiny", kwargs=IMG64, slow=True),
    Case("XCiT", "xcit_nano_12_p16_224", kwargs=IMG64),
    Case("Swin", "swin_tiny_patch4_window7_224", kwargs={"img_size": 64, "window_size": 2},
         slow=True),
    Case("Twins-PCPVT", "twins_pcpvt_small", kwargs=IMG64, slow=True),
    Case("PVTv2", "pvt_v2_b0"),
    Case("MaxViT", "maxvit_pico_rw_256", kwargs=IMG64, slow=True),
    Case("CoAtNet", "coatnet_pico_rw_224", kwargs=IMG64),
    Case("EfficientFormer", "efficientformer_l1", size=224, slow=True),
    Case("LeViT", "levit_128s", size=224, slow=True),
    Case("MobileViT", "mobilevit_xxs"),
    Case("MobileViTV2", "mobilevitv2_050"),
    Case("EdgeNeXt", "edgenext_xx_small"),
    Case("EfficientViT", "efficientvit_b0"),
    Case("MLP-Mixer", "mixer_s16_224", kwargs=IMG64),
    Case("ResMLP", "resmlp_12_224", kwargs=IMG64),
    Case("gMLP", "gmlp_ti16_224", kwargs=IMG64, exact=False),  # every width meets a LayerNorm
]
BY_NAME = {case.name: case for case in CASES}


def middle_layer(model: nn.Module) -> str:
    """A conv or linear layer halfway through the model (the one the tests ignore)."""
    layers = [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return layers[len(layers) // 2]
