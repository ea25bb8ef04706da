"""Settings for recovery fine-tuning (and for training a dense baseline)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import SpecError


@dataclass(frozen=True)
class RecoveryConfig:
    """SGD with momentum and a cosine learning-rate schedule, optional distillation.

    Attributes:
        epochs: passes over the training data.
        lr: peak learning rate.
        momentum: SGD momentum (Nesterov).
        weight_decay: L2 penalty (not applied to BatchNorm / bias parameters).
        warmup_steps: linear warm-up steps before the cosine decay.
        max_steps: stop after this many steps in total (None: all epochs).
        distill: distil from a teacher (the dense model); the training call then needs one,
            and refuses one when False.
        temperature: softmax temperature of the distillation KL term.
        alpha: weight of the distillation term; ``1 - alpha`` weights the label loss.
        label_smoothing: cross-entropy label smoothing.
        seed: seeds the run (dropout etc.); data order is the loader's business.
        bn_recalibration_batches: after training, re-estimate BatchNorm statistics over
            this many training batches (0: keep the running averages of training).
    """

    epochs: int = 1
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 0
    max_steps: int | None = None
    distill: bool = False
    temperature: float = 4.0
    alpha: float = 0.7
    label_smoothing: float = 0.0
    seed: int = 0
    bn_recalibration_batches: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 0:
            problems.append(f"epochs={self.epochs} (must be >= 0)")
        if not self.lr > 0:
            problems.append(f"lr={self.lr} (must be > 0)")
        if not 0 <= self.alpha <= 1:
            problems.append(f"alpha={self.alpha} (must be in [0, 1])")
        if not self.temperature > 0:
            problems.append(f"temperature={self.temperature} (must be > 0)")
        if self.max_steps is not None and self.max_steps < 0:
            problems.append(f"max_steps={self.max_steps} (must be >= 0)")
        if problems:
            raise SpecError("bad recovery settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
