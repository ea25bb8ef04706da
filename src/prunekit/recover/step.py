"""One optimisation step of recovery fine-tuning, usable inside any training loop.

Batches are moved to the model's device; the losses are computed in float32 for a bf16 /
fp16 model, whose optimiser updates float32 master copies (:mod:`.precision`; fp16 with
dynamic loss scaling). Pruned
weights stay zero: masked ones by their masks, those of a finalized model (no masks) by
:class:`.zeros.ZeroHold`.

Example:
    >>> step = RecoveryStep(model, config, total_steps=len(loader) * epochs, teacher=dense)
    >>> for epoch in range(epochs):
    ...     for x, y in loader:
    ...         loss = step(x, y)   # forward, loss, backward, SGD, schedule; masks stay fixed
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import is_wrapped, unwrap
from ..errors import SpecError
from ..inputs import ExampleInputs, call_model
from ..measure.placement import model_device, to_device
from .config import RecoveryConfig
from .gradual import Pruner
from .precision import LOW_PRECISION, MasterWeights
from .zeros import ZeroHold


def check_teacher(config: RecoveryConfig, teacher: nn.Module | None) -> None:
    """Refuse a teacher and ``config.distill`` that disagree: either way, one is ignored.

    Raises:
        SpecError: ``distill=True`` and ``teacher`` is None (it would train without
            distillation), or a teacher with ``distill=False`` (it would never be used), or
            a teacher wrapped in ``DistributedDataParallel`` (it is never trained).
    """
    if teacher is not None and is_wrapped(teacher):
        raise SpecError(
            "the teacher is wrapped in DistributedDataParallel, but it is never trained "
            "(its forward would take part in the student's gradient synchronisation)",
            "wrap only the student; pass the plain teacher module (teacher.module)",
        )
    if config.distill and teacher is None:
        raise SpecError(
            "RecoveryConfig(distill=True) needs a teacher to distil from, and none was given",
            "pass teacher=<the dense model>, or set distill=False to train on the labels only",
        )
    if not config.distill and teacher is not None:
        raise SpecError(
            "a teacher was given but RecoveryConfig(distill=False) never uses it",
            "set RecoveryConfig(distill=True) to distil from it, or drop teacher=",
        )


def precise(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 if it is bf16 / fp16 (losses are computed there), else itself."""
    return tensor.float() if tensor.dtype in LOW_PRECISION else tensor


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened logits, scaled by T^2.

    Args:
        student_logits: (N, classes) logits of the model being trained.
        teacher_logits: (N, classes) logits of the dense model.
        temperature: softening temperature T.

    Returns:
        A scalar loss (float32 for bf16 / fp16 logits).
    """
    student_logits, teacher_logits = precise(student_logits), precise(teacher_logits)
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * t * t


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
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
    forward (their gradient is zero); the exact zeros of weights without a mask (a model
    after :func:`prunekit.finalize`) are written back after every step (``keep_zeros``);
    physically pruned shapes never change. The teacher, if any, runs in eval mode without
    gradients. With a ``pruner`` the masks grow on its schedule (it is called before each
    step), otherwise they stay fixed. Inputs and targets are moved to the model's device
    (the teacher's inputs to the teacher's).

    Data parallel: pass the ``DistributedDataParallel`` wrapper (or the model Hugging Face
    ``Accelerator.prepare`` returns) as ``model`` and each rank's batches; gradients are
    averaged over the ranks in the backward, and masks, held zeros and the pruner act on
    the wrapped module on every rank after each step, so the ranks' weights stay equal.
    Cut (prune structurally) before wrapping; keep the teacher unwrapped.

    Args:
        model: the model to train (put in train mode on every call), or its DDP wrapper.
        config: :class:`RecoveryConfig`.
        total_steps: steps of the whole run (for the cosine and pruning schedules).
        teacher: dense model to distil from (needed when ``config.distill``, refused
            otherwise).
        pruner: a :class:`GradualPruner` or :class:`ChannelFade` acting before each step.
        keep_zeros: hold the exact zeros of unmasked weights at zero (see
            :mod:`.zeros`); False trains them like any weight.

    Raises:
        SpecError: ``config.distill`` without a teacher, or a teacher without it.
    """

    def __init__(
        self,
        model: nn.Module,
        config: RecoveryConfig,
        total_steps: int,
        teacher: nn.Module | None = None,
        pruner: Pruner | None = None,
        *,
        keep_zeros: bool = True,
    ) -> None:
        check_teacher(config, teacher)
        self.model = model  # what the forward runs (a DDP wrapper synchronises gradients)
        self.module = unwrap(model)  # what holds masks, zeros and parameters
        self.pruner = pruner
        self.config = config
        self.total_steps = max(1, total_steps)
        self.teacher = teacher
        if self.teacher is not None:
            self.teacher.eval()
        self.zeros = ZeroHold(self.module, keep_zeros)
        groups = param_groups(self.module, config.weight_decay)
        self.master = MasterWeights(p for group in groups for p in group["params"])
        for group in groups:
            group["params"] = [self.master[p] for p in group["params"]]
        self.optimizer = torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
        )
        self.steps_done = 0

    def _set_lr(self) -> None:
        lr = self.config.lr * cosine_factor(self.steps_done, self.total_steps,
                                             self.config.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def loss(self, inputs: ExampleInputs, targets: torch.Tensor) -> torch.Tensor:
        """The training loss on one batch (with graph; no optimiser step), in float32 at
        least."""
        device = model_device(self.model)
        logits = call_model(self.model, to_device(inputs, device))
        loss = F.cross_entropy(precise(logits), to_device(targets, device),
                               label_smoothing=self.config.label_smoothing)
        if self.teacher is not None:
            with torch.no_grad():
                teacher_inputs = to_device(inputs, model_device(self.teacher))
                teacher_logits = call_model(self.teacher, teacher_inputs).to(logits.device)
            kd = distillation_loss(logits, teacher_logits, self.config.temperature)
            loss = (1 - self.config.alpha) * loss + self.config.alpha * kd
        return loss

    def __call__(self, inputs: ExampleInputs, targets: torch.Tensor) -> float:
        """Run one step; returns the batch loss as a float."""
        self.model.train()
        if self.pruner is not None and self.pruner(self.module, self.steps_done,
                                                   self.total_steps):
            self.master.refresh()
        self._set_lr()
        loss = self.loss(inputs, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.model.zero_grad(set_to_none=True)
        self.master.backward_and_step(loss, self.optimizer)
        self.zeros()
        self.steps_done += 1
        return float(loss.detach())
