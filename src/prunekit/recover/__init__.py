"""Recovery fine-tuning: a loop (:func:`finetune`) and a step for your own loop."""

from .batchnorm import recalibrate_batchnorm
from .config import RecoveryConfig
from .finetune import FinetuneReport, finetune
from .gradual import GradualPruner, GradualSchedule
from .invariants import Snapshot, check_unchanged, snapshot
from .step import RecoveryStep, cosine_factor, distillation_loss

__all__ = [
    "RecoveryConfig",
    "FinetuneReport",
    "finetune",
    "GradualSchedule",
    "GradualPruner",
    "RecoveryStep",
    "cosine_factor",
    "distillation_loss",
    "Snapshot",
    "snapshot",
    "check_unchanged",
    "recalibrate_batchnorm",
]
