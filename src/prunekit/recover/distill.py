"""Recovery by output distillation: train a pruned model to reproduce the dense model's
outputs (sentence embeddings, hidden states, logits) on unlabelled inputs.

This is the recovery for models without a labelled task at hand, such as a sentence
encoder: the loss is the squared distance between the pruned and the dense outputs. Masks,
the pruned zeros of a finalized model and pruned shapes stay as they are (checked after
the run), and bf16 / fp16 students train through float32 master weights, exactly as in
:func:`.finetune.finetune`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..distributed import is_main_process, is_wrapped, mean_across_ranks, unwrap
from ..errors import SpecError
from ..inputs import call_model
from ..measure.placement import model_device, to_device
from ..result import PruneResult, model_of
from .finetune import FinetuneReport, check_same_steps
from .invariants import check_unchanged, snapshot
from .precision import MasterWeights
from .step import cosine_factor, precise
from .zeros import ZeroHold

OutputFn = Callable[[nn.Module, Any], torch.Tensor]


def model_output(model: nn.Module, batch: Any) -> torch.Tensor:
    """The default output: ``model(batch)`` (``*batch`` / ``**batch`` for a tuple / dict)."""
    out: torch.Tensor = call_model(model, batch)
    return out


def _tensor(out: object) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise SpecError(
            f"the output to match is a {type(out).__name__}, not a tensor",
            "pass outputs=fn(model, batch) that returns the tensor to match",
        )
    return out


def _check_arguments(
    student: nn.Module, teacher: nn.Module, batches: Iterable[Any], epochs: int, lr: float
) -> int:
    """Steps per epoch; raises SpecError on bad arguments (nothing is touched before)."""
    problems = []
    if is_wrapped(teacher):
        problems.append("the teacher is wrapped in DistributedDataParallel (wrap only the "
                        "student; pass the plain teacher module)")
    if unwrap(student) is unwrap(teacher):
        problems.append("the student is the teacher (distil a pruned copy from the dense model)")
    if not isinstance(epochs, int) or epochs < 0:
        problems.append(f"epochs={epochs!r} (must be an int >= 0)")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        problems.append(f"lr={lr!r} (must be a finite number > 0)")
    if isinstance(batches, Iterator):
        problems.append("batches is a one-pass iterator (pass a list or a DataLoader)")
    try:
        per_epoch = len(batches)  # type: ignore[arg-type]
    except TypeError:
        problems.append("batches has no len() (pass a list or a DataLoader)")
        per_epoch = 0
    if problems:
        raise SpecError("bad distillation arguments: " + "; ".join(problems))
    return per_epoch


def distill_outputs(
    student: nn.Module | PruneResult,
    teacher: nn.Module | PruneResult,
    batches: Iterable[Any],
    *,
    outputs: OutputFn = model_output,
    epochs: int = 1,
    lr: float = 1e-4,
    cosine: bool = True,
    dropout: bool = False,
    seed: int = 0,
    progress: bool = True,
    keep_zeros: bool = True,
) -> FinetuneReport:
    """Train ``student`` in place so that ``outputs(student, batch)`` matches the teacher's.

    The loss is ``||student - teacher||^2`` summed over the last dimension, averaged over
    the rest (in float32 for bf16 / fp16 outputs); AdamW without weight decay, on float32
    master copies of bf16 / fp16 parameters. For a list of batches the teacher's outputs
    are computed once and reused in later epochs. Each model gets the batch on its own
    device.

    Data parallel: pass the student's ``DistributedDataParallel`` wrapper, the unwrapped
    teacher and each rank's own batches (the same number on every rank); gradients are
    averaged over the ranks, so their students stay equal, and the reported losses are the
    means over the ranks.

    Args:
        student: the pruned model (masked or physically smaller), or its DDP wrapper.
        teacher: the dense model; run in eval mode without gradients, never changed.
        batches: re-iterable inputs with a ``len()`` (a list or a DataLoader), each passed
            to ``outputs`` as it is.
        outputs: ``fn(model, batch) -> tensor`` to match (default: ``model(batch)``).
        epochs: passes over ``batches``.
        lr: AdamW learning rate (the peak, with ``cosine``).
        cosine: decay the learning rate to 0 over the run (else constant).
        dropout: train with the student's dropout on (train mode); off by default, because
            the teacher's outputs are the dropout-free ones.
        seed: seeds the run (dropout).
        progress: show a tqdm bar.
        keep_zeros: hold the exact zeros of the student's weights that carry no mask at
            zero (a finalized model's pruned weights; see :mod:`.zeros`); False trains them.

    Returns:
        A :class:`FinetuneReport` (steps, epochs, seconds, mean loss per epoch).

    Raises:
        SpecError: bad arguments (before anything is changed).
        PlanError: training changed a shape or a mask, or revived a pruned weight.

    Example:
        >>> report = distill_outputs(pruned, dense, batches, epochs=1, lr=1e-4)
    """
    student = model_of(student, "student")
    teacher = model_of(teacher, "teacher")
    per_epoch = _check_arguments(student, teacher, batches, epochs, lr)
    if is_wrapped(student):
        check_same_steps(per_epoch * epochs)
    module = unwrap(student)
    zeros = ZeroHold(module, keep_zeros)
    before = snapshot(module, zeros.zeros)
    params = [p for p in module.parameters() if p.requires_grad]
    master = MasterWeights(params)
    optimizer = torch.optim.AdamW([master[p] for p in params], lr=lr, weight_decay=0.0)
    total = max(1, per_epoch * epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_factor(step, total, 0) if cosine else 1.0
    )
    cache: dict[int, torch.Tensor] | None = {} if isinstance(batches, Sequence) else None
    teacher_was_training = teacher.training
    teacher.eval()
    device = model_device(student)
    losses: list[float] = []
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(), tqdm(
            total=per_epoch * epochs, desc="distil", disable=not (progress and is_main_process()),
            leave=False
        ) as bar:
            torch.manual_seed(seed)
            student.train(dropout)
            for _ in range(epochs):
                epoch_losses = []
                for index, batch in enumerate(batches):
                    target = _teacher_output(teacher, batch, index, outputs, cache)
                    predicted = _tensor(outputs(student, to_device(batch, device)))
                    target = target.to(predicted.device)
                    loss = (precise(predicted) - precise(target)).pow(2).sum(-1).mean()
                    optimizer.zero_grad(set_to_none=True)
                    student.zero_grad(set_to_none=True)
                    master.backward_and_step(loss, optimizer)
                    zeros()
                    schedule.step()
                    epoch_losses.append(float(loss.detach()))
                    bar.update()
                losses.append(sum(epoch_losses) / max(1, len(epoch_losses)))
                if is_wrapped(student):
                    losses[-1] = mean_across_ranks(losses[-1])
    finally:
        student.eval()
        teacher.train(teacher_was_training)
    check_unchanged(module, before)
    return FinetuneReport(per_epoch * epochs, epochs, time.perf_counter() - start, losses)


def _teacher_output(
    teacher: nn.Module,
    batch: Any,
    index: int,
    outputs: OutputFn,
    cache: dict[int, torch.Tensor] | None,
) -> torch.Tensor:
    if cache is not None and index in cache:
        return cache[index]
    with torch.no_grad():
        target = _tensor(outputs(teacher, to_device(batch, model_device(teacher)))).detach()
    if cache is not None:
        cache[index] = target
    return target
