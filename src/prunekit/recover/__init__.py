"""Recovery fine-tuning: a loop (:func:`finetune`) and a step for your own loop."""

from .batchnorm import recalibrate_batchnorm
from .channel_fade import ChannelFade, faded_channels, transplant
from .config import RecoveryConfig
from .finetune import FinetuneReport, finetune
from .gradual import GradualPruner, GradualSchedule, Pruner
from .invariants import Snapshot, check_unchanged, snapshot
from .step import RecoveryStep, cosine_factor, distillation_loss

__all__ = [
    "RecoveryConfig",
    "FinetuneReport",
    "finetune",
    "GradualSchedule",
    "GradualPruner",
    "Pruner",
    "ChannelFade",
    "faded_channels",
    "transplant",
    "RecoveryStep",
    "cosine_factor",
    "distillation_loss",
    "Snapshot",
    "snapshot",
    "check_unchanged",
    "recalibrate_batchnorm",
]
