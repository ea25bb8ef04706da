"""A ``transformers.Trainer`` whose loss adds distillation from a dense teacher.

A callback cannot change the loss, so recovery by distillation needs a ``Trainer``
subclass: :class:`DistillationTrainer` computes the student's outputs as usual, the
teacher's without gradients, and trains on ``(1 - alpha) * label loss + alpha * distill``,
or on the distillation term alone for batches without labels. The term is prunekit's:
``"kl"`` is :func:`prunekit.recover.distillation_loss` on the logits (KL at a temperature,
as :func:`prunekit.recover.finetune` distils), ``"mse"`` the squared distance of the
outputs summed over the last dimension (as :func:`prunekit.recover.distill_outputs`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from ..errors import SpecError
from ..recover.step import distillation_loss, precise

try:
    from transformers import Trainer
except ImportError as exc:  # pragma: no cover - exercised by a test that hides transformers
    from .deps import missing_dependency

    raise missing_dependency("transformers", "prunekit.integrations.hf_trainer", "hf") from exc

DistillKind = Literal["kl", "mse"]
KINDS = ("kl", "mse")
LABEL_KEYS = ("labels", "label", "label_ids")


def output_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``||student - teacher||^2`` summed over the last dimension, averaged over the rest
    (float32 for bf16 / fp16), the loss of :func:`prunekit.recover.distill_outputs`."""
    return (precise(student) - precise(teacher).to(student.device)).pow(2).sum(-1).mean()


def _check(student: object, teacher: object, alpha: object, temperature: object,
           kind: object, output_key: object) -> None:
    problems = []
    if not isinstance(teacher, nn.Module):
        problems.append(f"teacher must be an nn.Module, got {type(teacher).__name__}")
    elif teacher is student:
        problems.append("the teacher is the student (distil a pruned copy from the dense model)")
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        problems.append(f"alpha={alpha!r} (must be in [0, 1])")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        problems.append(f"temperature={temperature!r} (must be a finite number > 0)")
    if kind not in KINDS:
        problems.append(f"kind={kind!r} (must be one of {KINDS})")
    if not isinstance(output_key, str):
        problems.append(f"output_key={output_key!r} (must be a string)")
    if problems:
        raise SpecError("bad distillation settings: " + "; ".join(problems))


def _output(outputs: Any, key: str) -> torch.Tensor:
    """The tensor to match: ``outputs[key]`` of a dict-like output, or the tensor itself."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) and key in outputs:
        value = outputs[key]
    elif isinstance(outputs, (tuple, list)) and outputs:
        value = outputs[-1] if key == "logits" and len(outputs) > 1 else outputs[0]
    else:
        value = getattr(outputs, key, None)
    if not isinstance(value, torch.Tensor):
        raise SpecError(f"the model's output has no tensor {key!r} to distil",
                        "pass output_key= naming the output to match (e.g. 'logits')")
    return value


def _label_loss(outputs: Any) -> torch.Tensor | None:
    loss = outputs.get("loss") if isinstance(outputs, dict) else getattr(outputs, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


class DistillationTrainer(Trainer):
    """``transformers.Trainer`` that distils the model being trained from ``teacher``.

    Use it with :class:`~prunekit.integrations.hf_trainer.PrunekitCallback` to prune and
    recover in one run; the teacher (the dense model) runs in eval mode without gradients
    and is moved to the training device.

    Args:
        *args: as for ``Trainer``.
        teacher: the dense model; called with the same batch minus its labels.
        alpha: weight of the distillation term (``1 - alpha`` weights the model's own loss,
            when the batch has labels).
        temperature: softening temperature of ``kind="kl"``.
        kind: ``"kl"`` (logits) or ``"mse"`` (any output, e.g. embeddings).
        output_key: which output to match (``"logits"``; a tensor output is used as is).
        **kwargs: as for ``Trainer``.

    Raises:
        SpecError: the teacher is the student or no module, ``alpha`` outside [0, 1], a
            temperature that is not > 0, an unknown ``kind``; a model output without
            ``output_key`` (when the loss is first computed).
    """

    loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it for accumulation

    def __init__(
        self,
        *args: Any,
        teacher: nn.Module,
        alpha: float = 0.5,
        temperature: float = 2.0,
        kind: DistillKind = "kl",
        output_key: str = "logits",
        **kwargs: Any,
    ) -> None:
        student = kwargs.get("model", args[0] if args else None)
        _check(student, teacher, alpha, temperature, kind, output_key)
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval()
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.kind: DistillKind = kind
        self.output_key = output_key

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The model's own loss (if the batch has labels) mixed with the distillation term.

        Args:
            model: the model being trained.
            inputs: one batch (keyword arguments of the model).
            return_outputs: also return the model's outputs.
            num_items_in_batch: unused (the distillation term is a per-batch mean).

        Returns:
            The loss, or ``(loss, outputs)``.
        """
        del num_items_in_batch
        outputs = model(**inputs)
        with torch.no_grad():
            teacher_inputs = {k: v for k, v in inputs.items() if k not in LABEL_KEYS}
            teacher_out = _output(self.teacher(**teacher_inputs), self.output_key)
        student_out = _output(outputs, self.output_key)
        if self.kind == "kl":
            distill = distillation_loss(student_out, teacher_out.to(student_out.device),
                                        self.temperature)
        else:
            distill = output_distance(student_out, teacher_out)
        label_loss = _label_loss(outputs)
        loss = distill if label_loss is None else (
            (1 - self.alpha) * precise(label_loss) + self.alpha * distill)
        return (loss, outputs) if return_outputs else loss
