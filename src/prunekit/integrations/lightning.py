"""A PyTorch Lightning callback that prunes with prunekit and keeps the masks through
training, checkpoints and resumption.

Example:
    >>> from prunekit.integrations.lightning import PrunekitPruning
    >>> trainer = L.Trainer(max_epochs=3, callbacks=[PrunekitPruning(pk.Unstructured(0.9))])
    >>> trainer.fit(module, loader)                     # pruned before the first step
    >>> trainer.fit(module, loader, ckpt_path="last.ckpt")  # a fresh module resumes masked

Unlike Lightning's own ``ModelPruning``: the masks are saved in the checkpoint and put back
onto a freshly built module before its weights are restored (``trainer.fit(...,
ckpt_path=...)``), so a resumed run trains the same sparse network; biases and norms are
never pruned (prunekit prunes the weights of Linear and convolution layers); kept weights
are never reset.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from torch import nn

from ..errors import SpecError
from ..recover.gradual import GradualSchedule
from ..targets import IgnoreEntry
from .control import MaskSpec, PruningControl, SpecFactory, Unit
from .deps import missing_dependency
from .masks import MaskLoading, zero_behind_masks

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised by a test that hides lightning
    raise missing_dependency("lightning", "prunekit.integrations.lightning", "distributed") from exc

log = logging.getLogger(__name__)

__all__ = ["PrunekitPruning"]


class PrunekitPruning(pl.Callback):
    """Prune a LightningModule with a prunekit spec during ``trainer.fit``.

    - **one-shot**: ``PrunekitPruning(pk.Unstructured(sparsity=0.9))`` prunes when fitting
      starts (or at the start of epoch ``epoch``) and keeps the masks to the end;
    - **gradual**: with ``schedule=GradualSchedule(...)`` the sparsity ramps from the
      schedule's initial to its final sparsity per optimiser step (``unit="step"``, the
      schedule's fractions of ``trainer.estimated_stepping_batches``) or per epoch
      (``unit="epoch"``, fractions of ``max_epochs``);
    - **keep**: with no spec, the masks the module already carries (any prunekit method,
      applied before ``fit``) are kept.

    After every optimiser step the stored values behind the masks are set to zero
    (:func:`~prunekit.integrations.masks.zero_behind_masks`); masked weights are zero in
    every forward anyway. The masks (``weight_mask`` buffers) are in every checkpoint, and
    the callback restores them onto a freshly built module before Lightning loads its
    weights, together with how far the pruning got, so ``trainer.fit(..., ckpt_path=...)``
    resumes with the same masks and schedule. The module stays masked after ``fit``; call
    :func:`prunekit.finalize` on it to bake the zeros in.

    Args:
        spec: :class:`~prunekit.Unstructured` or :class:`~prunekit.NM` (magnitude or random
            importance); with ``schedule`` an ``Unstructured`` whose sparsity is the
            schedule's final one, or a function ``sparsity -> spec``; None keeps existing
            masks.
        schedule: ramp the sparsity (a :class:`~prunekit.recover.GradualSchedule`).
        epoch: one-shot: prune at the start of this epoch (0: when fitting starts).
        unit: gradual: ``"step"`` or ``"epoch"``.
        ignore: module names (as in ``module.named_modules()``), types or compiled regexes
            to leave dense, e.g. a teacher held by the module.
        module: the attribute path of the submodule to prune (default: every submodule of
            the LightningModule); ``ignore`` names are relative to it.

    Raises:
        SpecError: bad settings (see :class:`~prunekit.integrations.control.PruningControl`),
            when constructed; at ``fit``: a gradual run of unknown length, or ``module``
            naming no submodule.
        TargetError: at ``fit``, an ``ignore`` entry that matches no module (nothing is
            pruned).
    """

    def __init__(
        self,
        spec: MaskSpec | SpecFactory | None = None,
        *,
        schedule: GradualSchedule | None = None,
        epoch: int = 0,
        unit: Unit = "step",
        ignore: Iterable[IgnoreEntry] | IgnoreEntry = (),
        module: str | None = None,
    ) -> None:
        if module is not None and not (isinstance(module, str) and module):
            raise SpecError(f"module={module!r} must be a non-empty attribute path",
                            "e.g. module='net', or leave it out to prune every submodule")
        self.control = PruningControl(spec, schedule=schedule, epoch=epoch, unit=unit,
                                      ignore=ignore)
        self.module = module
        self._loading = MaskLoading()

    @property
    def state_key(self) -> str:
        """Identifies this callback's state in checkpoints (one per settings)."""
        return self._generate_state_key(mode=self.control.mode, module=self.module,
                                        epoch=self.control.epoch, unit=self.control.unit)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Before Lightning restores a checkpoint: restore masks when it loads weights."""
        self._loading.attach(pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remove the loading hook (the module keeps its masks)."""
        self._loading.detach()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        """A failed run: remove the loading hook as :meth:`teardown` would."""
        self._loading.detach()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Prune one-shot (``epoch=0``) or apply the schedule's initial sparsity."""
        target = self._target(pl_module)
        if self.control.mode == "one-shot" and self.control.epoch == 0:
            self.control.prune_once(target)
        elif self.control.mode == "gradual":
            self.control.start(target, self._total(trainer))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Prune one-shot at epoch ``epoch``; advance an epoch schedule."""
        if self.control.mode == "one-shot" and trainer.current_epoch >= self.control.epoch:
            self.control.prune_once(self._target(pl_module))
        elif self.control.mode == "gradual" and self.control.unit == "epoch":
            self.control.advance(self._target(pl_module), trainer.current_epoch,
                                 self._total(trainer))

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Advance a step schedule before the step."""
        if self.control.mode == "gradual" and self.control.unit == "step":
            self.control.advance(self._target(pl_module), trainer.global_step,
                                 self._total(trainer))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:
        """After the optimiser step: zero the stored values behind the masks."""
        zero_behind_masks(pl_module)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: whether the one-shot prune ran, the scheduled sparsity."""
        return self.control.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restored from a checkpoint before fitting starts."""
        self.control.load_state_dict(state_dict)

    def _target(self, pl_module: pl.LightningModule) -> nn.Module:
        """The module to prune. Not the LightningModule itself: it refers to its trainer,
        which prunekit's undo-on-failure snapshot would copy."""
        if self.module is not None:
            try:
                return pl_module.get_submodule(self.module)
            except AttributeError as exc:
                names = [name for name, _ in pl_module.named_children()]
                raise SpecError(f"module={self.module!r} names no submodule of "
                                f"{type(pl_module).__name__}",
                                f"its submodules are: {', '.join(names) or 'none'}") from exc
        holder = nn.Module()
        for name, child in pl_module.named_children():
            holder.add_module(name, child)
        return holder

    def _total(self, trainer: pl.Trainer) -> int:
        """The length of the run in the schedule's unit."""
        total: float | None
        if self.control.unit == "epoch":
            total, what = trainer.max_epochs, "max_epochs"
        else:
            total, what = trainer.estimated_stepping_batches, "estimated_stepping_batches"
        if total is None or not math.isfinite(total) or total < 1:
            raise SpecError(
                f"a gradual schedule per {self.control.unit} needs a run of known length; "
                f"the trainer's {what} is {total}",
                "set max_epochs (unit='epoch') or max_steps / max_epochs (unit='step')")
        return int(total)
