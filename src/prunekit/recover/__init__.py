"""Recovery fine-tuning: a loop (:func:`finetune`), a step for your own loop, and output
distillation for models without labels (:func:`distill_outputs`)."""

from .batchnorm import recalibrate_batchnorm
from .channel_fade import ChannelFade, faded_channels, transplant
from .config import RecoveryConfig
from .distill import distill_outputs, model_output
from .finetune import FinetuneReport, finetune
from .gradual import GradualPruner, GradualSchedule, Pruner
from .invariants import Snapshot, check_unchanged, snapshot
from .step import RecoveryStep, cosine_factor, distillation_loss

__all__ = [
    "RecoveryConfig",
    "FinetuneReport",
    "finetune",
    "distill_outputs",
    "model_output",
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
