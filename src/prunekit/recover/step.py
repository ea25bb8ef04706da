"""One optimisation step of recovery fine-tuning, usable inside any training loop.

Example:
    >>> step = RecoveryStep(model, config, total_steps=len(loader) * epochs, teacher=dense)
    >>> for epoch in range(epochs):
    ...     for x, y in loader:
    ...         loss = step(x, y)   # forward, loss, backward, SGD, schedule; masks stay fixed
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..inputs import ExampleInputs, call_model
from .config import RecoveryConfig
from .gradual import Pruner


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened logits, scaled by T^2.

    Args:
        student_logits: (N, classes) logits of the model being trained.
        teacher_logits: (N, classes) logits of the dense model.
        temperature: softening temperature T.

    Returns:
        A scalar loss.
    """
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * t * t


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Two SGD groups: weights with decay, BatchNorm/bias (1-d tensors) without."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def cosine_factor(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to 0 at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


class RecoveryStep:
    """Forward, loss (cross-entropy, plus KL to a teacher), backward, SGD step, LR schedule.

    Masked weights stay zero because the masked end state multiplies by the mask in every
    forward (their gradient is zero); physically pruned shapes never change. The teacher,
    if any, runs in eval mode without gradients. With a ``pruner`` the masks grow on its
    schedule (it is called before each step), otherwise they stay fixed.

    Args:
        model: the model to train (put in train mode on every call).
        config: :class:`RecoveryConfig`.
        total_steps: steps of the whole run (for the cosine and pruning schedules).
        teacher: dense model to distil from (used when ``config.distill``).
        pruner: a :class:`GradualPruner` or :class:`ChannelFade` acting before each step.
    """

    def __init__(
        self,
        model: nn.Module,
        config: RecoveryConfig,
        total_steps: int,
        teacher: nn.Module | None = None,
        pruner: Pruner | None = None,
    ) -> None:
        self.model = model
        self.pruner = pruner
        self.config = config
        self.total_steps = max(1, total_steps)
        self.teacher = teacher if config.distill else None
        if self.teacher is not None:
            self.teacher.eval()
        self.optimizer = torch.optim.SGD(
            param_groups(model, config.weight_decay), lr=config.lr,
            momentum=config.momentum, nesterov=config.momentum > 0,
        )
        self.steps_done = 0

    def _set_lr(self) -> None:
        lr = self.config.lr * cosine_factor(self.steps_done, self.total_steps,
                                             self.config.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def loss(self, inputs: ExampleInputs, targets: torch.Tensor) -> torch.Tensor:
        """The training loss on one batch (with graph; no optimiser step)."""
        logits = call_model(self.model, inputs)
        loss = F.cross_entropy(logits, targets, label_smoothing=self.config.label_smoothing)
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = call_model(self.teacher, inputs)
            kd = distillation_loss(logits, teacher_logits, self.config.temperature)
            loss = (1 - self.config.alpha) * loss + self.config.alpha * kd
        return loss

    def __call__(self, inputs: ExampleInputs, targets: torch.Tensor) -> float:
        """Run one step; returns the batch loss as a float."""
        self.model.train()
        if self.pruner is not None:
            self.pruner(self.model, self.steps_done, self.total_steps)
        self._set_lr()
        loss = self.loss(inputs, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps_done += 1
        return float(loss.detach())
