"""A Hugging Face ``transformers.Trainer`` callback that prunes with prunekit and keeps the
masks through training, checkpoints and ``train(resume_from_checkpoint=...)``; and
:class:`DistillationTrainer` (in :mod:`.hf_distill`) for recovery by distillation, which a
callback cannot do because it cannot change the loss.

Example:
    >>> from prunekit.integrations.hf_trainer import PrunekitCallback
    >>> trainer = Trainer(model, args, train_dataset=data,
    ...                   callbacks=[PrunekitCallback(pk.Unstructured(sparsity=0.5))])
    >>> trainer.train()   # pruned before the first step, masks kept to the end
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from torch import nn

from ..apply.masks import masked_modules
from ..errors import PlanError
from ..recover.gradual import GradualSchedule
from ..targets import IgnoreEntry
from .control import MaskSpec, PruningControl, SpecFactory, Unit
from .deps import missing_dependency
from .masks import MaskLoading, zero_behind_masks

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:  # pragma: no cover - exercised by a test that hides transformers
    raise missing_dependency("transformers", "prunekit.integrations.hf_trainer", "hf") from exc

from .hf_distill import DistillationTrainer  # noqa: E402 - needs transformers, checked above

log = logging.getLogger(__name__)

__all__ = ["DistillationTrainer", "PrunekitCallback"]


class PrunekitCallback(TrainerCallback):
    """Prune the ``Trainer``'s model with a prunekit spec while it trains.

    The modes are those of the Lightning callback
    (:class:`~prunekit.integrations.lightning.PrunekitPruning`): one-shot at the start of
    epoch ``epoch`` (0: before the first step), gradual on a
    :class:`~prunekit.recover.GradualSchedule` per optimiser step (fractions of
    ``max_steps``) or per epoch (fractions of ``num_train_epochs``), or keep the masks the
    model already carries (no spec).

    After every optimiser step the stored values behind the masks are set to zero. The
    masks are saved in every checkpoint (``weight_mask`` entries next to ``weight_orig``)
    and put back onto a freshly built model before ``train(resume_from_checkpoint=...)``
    loads its weights; the sparsity a gradual schedule had reached is recomputed from the
    restored step. Pass the callback to ``Trainer(callbacks=[...])``: it must see the model
    when the Trainer is built, before ``train`` restores a checkpoint (added later with
    ``add_callback``, a resumed run fails with :class:`~prunekit.errors.PlanError` instead
    of training a model whose masked weights were never loaded).

    Args:
        spec: :class:`~prunekit.Unstructured` or :class:`~prunekit.NM` (magnitude or random
            importance); with ``schedule`` an ``Unstructured`` whose sparsity is the
            schedule's final one, or a function ``sparsity -> spec``; None keeps masks.
        schedule: ramp the sparsity.
        epoch: one-shot: prune at the start of this epoch (0: before training).
        unit: gradual: ``"step"`` or ``"epoch"``.
        ignore: module names, types or compiled regexes to leave dense.

    Raises:
        SpecError: bad settings, when constructed.
        TargetError: at ``train``, an ``ignore`` entry matching no module (nothing pruned).
        PlanError: at a resumed ``train``, a model that should carry masks but does not.
    """

    def __init__(
        self,
        spec: MaskSpec | SpecFactory | None = None,
        *,
        schedule: GradualSchedule | None = None,
        epoch: int = 0,
        unit: Unit = "step",
        ignore: Iterable[IgnoreEntry] | IgnoreEntry = (),
    ) -> None:
        self.control = PruningControl(spec, schedule=schedule, epoch=epoch, unit=unit,
                                      ignore=ignore)
        self._loading = MaskLoading()

    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: nn.Module | None = None, **kwargs: Any) -> None:
        """When the Trainer is built: restore masks whenever it loads weights."""
        if model is not None:
            self._loading.attach(model)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: nn.Module | None = None,
                       **kwargs: Any) -> None:
        """Prune one-shot (epoch 0) or start the schedule; on resumption, check the masks."""
        model = _model(model)
        self._loading.attach(model)
        epoch = _epoch(state)
        if state.global_step > 0:
            self._resume(model, args, state, epoch)
        if self.control.mode == "one-shot" and epoch >= self.control.epoch:
            self.control.prune_once(model)
        elif self.control.mode == "gradual":
            self.control.start(model, self._total(args, state))

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: nn.Module | None = None,
                       **kwargs: Any) -> None:
        """Prune one-shot at epoch ``epoch``; advance an epoch schedule."""
        model = _model(model)
        epoch = _epoch(state)
        if self.control.mode == "one-shot" and epoch >= self.control.epoch:
            self.control.prune_once(model)
        elif self.control.mode == "gradual" and self.control.unit == "epoch":
            self.control.advance(model, epoch, self._total(args, state))

    def on_step_begin(self, args: TrainingArguments, state: TrainerState,
                      control: TrainerControl, model: nn.Module | None = None,
                      **kwargs: Any) -> None:
        """Advance a step schedule before the step."""
        if self.control.mode == "gradual" and self.control.unit == "step":
            self.control.advance(_model(model), state.global_step, self._total(args, state))

    def on_optimizer_step(self, args: TrainingArguments, state: TrainerState,
                          control: TrainerControl, model: nn.Module | None = None,
                          **kwargs: Any) -> None:
        """After the optimiser step: zero the stored values behind the masks."""
        zero_behind_masks(_model(model))

    def on_train_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, **kwargs: Any) -> None:
        """Remove the loading hook (the model keeps its masks)."""
        self._loading.detach()

    def _total(self, args: TrainingArguments, state: TrainerState) -> int:
        if self.control.unit == "epoch":
            return max(1, math.ceil(args.num_train_epochs))
        return max(1, int(state.max_steps))

    def _resume(self, model: nn.Module, args: TrainingArguments, state: TrainerState,
                epoch: int) -> None:
        """A run resumed at ``state.global_step``: what was pruned before it must be there."""
        if self.control.mode == "one-shot":
            # pruned at the start of its epoch: a run past that point must carry the masks
            expected = (state.epoch or 0.0) > self.control.epoch + 1e-6
            self.control.pruned = self.control.pruned or (expected and bool(masked_modules(model)))
        else:
            step = epoch if self.control.unit == "epoch" else state.global_step
            self.control.resume_from_schedule(step, self._total(args, state))
            expected = self.control.pruner is not None and self.control.pruner.current > 0
        if expected and not masked_modules(model):
            raise PlanError(
                f"training resumed at step {state.global_step}, where the model should carry "
                "masks, but it has none: the checkpoint's masked weights were not loaded",
                "pass the callback to Trainer(callbacks=[...]) so it sees the model before "
                "train() restores the checkpoint (not trainer.add_callback)")


def _model(model: nn.Module | None) -> nn.Module:
    if model is None:
        raise PlanError("the Trainer passed no model to the callback",
                        "use a transformers.Trainer (or a subclass that keeps its callbacks)")
    return model


def _epoch(state: TrainerState) -> int:
    """Epochs completed (``state.epoch`` is a float, exact at epoch boundaries)."""
    return math.floor((state.epoch or 0.0) + 1e-6)
