"""What a training-framework callback prunes, and when: the part shared by the Lightning and
the Hugging Face ``Trainer`` callbacks, free of either framework.

Three modes, chosen by the arguments:

- **keep** (no spec): the masks the model already carries (from :func:`prunekit.prune`
  before training, any method) are held through training and checkpoints;
- **one-shot** (a spec): prune once at the start of epoch ``epoch`` (0: before the first
  step), then keep the masks;
- **gradual** (a spec and a :class:`~prunekit.recover.GradualSchedule`): the sparsity
  ramps on the schedule, per optimiser step or per epoch, through
  :class:`~prunekit.recover.GradualPruner` (masks only ever lose entries).

Only mask-based specs are accepted (:class:`~prunekit.Unstructured`, :class:`~prunekit.NM`
with magnitude or random importance): they keep every Parameter object, so the optimiser
built by the framework keeps working. Norms and biases are never pruned (prunekit prunes the
weights of Linear and convolution layers only), and pruning never changes a kept weight.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal

from torch import nn

from ..errors import SpecError
from ..recover.gradual import GradualPruner, GradualSchedule
from ..specs import CALIBRATED_IMPORTANCE, NM, Structured, TransformerStructured, Unstructured
from ..targets import IgnoreEntry, ignore_entries
from .masks import mask_sparsity

log = logging.getLogger(__name__)

MaskSpec = Unstructured | NM
SpecFactory = Callable[[float], MaskSpec]
Unit = Literal["step", "epoch"]
Mode = Literal["keep", "one-shot", "gradual"]
UNITS = ("step", "epoch")
SPEC_HINT = ("prune before training with pk.prune(model, spec, inplace=True, ...) and pass "
             "no spec: the callback then keeps the masks the model carries")


def check_mask_spec(spec: object, where: str) -> MaskSpec:
    """``spec`` if it is a mask-based spec a callback can apply mid-training.

    Args:
        spec: the candidate.
        where: what gave it, for the message (``"spec"``, ``"spec(0.9)"``).

    Returns:
        ``spec``.

    Raises:
        SpecError: a structured spec (it changes shapes under the optimiser), a calibrated
            importance (it needs calibration batches), or not a spec at all.
    """
    if isinstance(spec, (Structured, TransformerStructured)):
        raise SpecError(
            f"{where} is {type(spec).__name__}: structured pruning changes layer shapes, "
            "which the optimiser of a running training loop cannot follow", SPEC_HINT)
    if not isinstance(spec, (Unstructured, NM)):
        raise SpecError(f"{where} must be pk.Unstructured or pk.NM, got {type(spec).__name__}",
                        "e.g. pk.Unstructured(sparsity=0.9, scope='global')")
    if spec.importance in CALIBRATED_IMPORTANCE:
        raise SpecError(
            f"{where} uses importance={spec.importance!r}, which needs calibration batches "
            "that a callback does not have", SPEC_HINT)
    return spec


def _factory(spec: MaskSpec | SpecFactory, schedule: GradualSchedule) -> SpecFactory:
    """The spec at each sparsity of a gradual run (checked at the final sparsity)."""
    if isinstance(spec, Unstructured):
        if spec.sparsity is None or abs(spec.sparsity - schedule.final_sparsity) > 1e-12:
            raise SpecError(
                f"spec sparsity={spec.sparsity} and schedule final_sparsity="
                f"{schedule.final_sparsity} disagree",
                "give the same sparsity to both (the spec's other fields are kept at every "
                "step of the ramp)")
        template = spec
        return lambda sparsity: dataclasses.replace(template, sparsity=sparsity)
    if isinstance(spec, NM):
        raise SpecError("a gradual schedule cannot ramp pk.NM (its sparsity is fixed by n:m)",
                        "prune N:M one-shot (no schedule), or ramp pk.Unstructured")
    if not callable(spec):
        raise SpecError(f"spec must be pk.Unstructured or a function of the sparsity, got "
                        f"{type(spec).__name__}", "e.g. lambda s: pk.Unstructured(sparsity=s)")
    check_mask_spec(spec(schedule.final_sparsity), f"spec({schedule.final_sparsity})")
    return spec


def _check_plain(epoch: object, unit: object) -> None:
    problems = []
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        problems.append(f"epoch={epoch!r} (must be an int >= 0)")
    if unit not in UNITS:
        problems.append(f"unit={unit!r} (must be one of {UNITS})")
    if problems:
        raise SpecError("bad pruning callback settings: " + "; ".join(problems))


class PruningControl:
    """Prunes a model on a callback's events, remembering what it did (for checkpoints).

    Args:
        spec: ``None`` (keep existing masks), a mask-based spec (one-shot; with a schedule
            an :class:`~prunekit.Unstructured` is the template of every step), or a
            function ``sparsity -> spec`` for a schedule.
        schedule: a :class:`~prunekit.recover.GradualSchedule` to ramp the sparsity.
        epoch: one-shot only: the epoch at whose start to prune (0: before training).
        unit: gradual only: ``"step"`` (optimiser steps) or ``"epoch"``; the schedule's
            ``every`` and fractions count in it.
        ignore: module names, types or compiled regexes to leave dense (as in
            :func:`prunekit.prune`).

    Raises:
        SpecError: a structured or calibrated spec, a schedule without a spec or with N:M,
            a spec sparsity that disagrees with the schedule, a negative ``epoch``, an
            unknown ``unit``.
        TargetError: an ``ignore`` entry that is no name, type or regex.
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
        _check_plain(epoch, unit)
        if schedule is not None and not isinstance(schedule, GradualSchedule):
            raise SpecError(f"schedule must be a GradualSchedule, got {type(schedule).__name__}",
                            "e.g. GradualSchedule(final_sparsity=0.9, end_fraction=0.6)")
        if schedule is not None and spec is None:
            raise SpecError("a gradual schedule needs a spec to ramp",
                            "pass spec=pk.Unstructured(sparsity=<final sparsity>)")
        self.ignore = ignore_entries(ignore)
        self.schedule = schedule
        self.epoch = epoch
        self.unit: Unit = unit
        self.spec: MaskSpec | None = None
        self.pruner: GradualPruner | None = None
        if schedule is not None:
            assert spec is not None
            self.pruner = GradualPruner(schedule, _factory(spec, schedule), self.ignore)
        elif spec is not None:
            self.spec = check_mask_spec(spec, "spec")
        self.pruned = False  # one-shot: done (restored from checkpoints)
        self._started_total: int | None = None

    @property
    def mode(self) -> Mode:
        """``"keep"``, ``"one-shot"`` or ``"gradual"``."""
        if self.pruner is not None:
            return "gradual"
        return "keep" if self.spec is None else "one-shot"

    def prune_once(self, model: nn.Module) -> bool:
        """One-shot mode: prune ``model`` in place unless already done; returns whether it did.

        Raises:
            PrunekitError: from :func:`prunekit.prune` (e.g. ``TargetError`` for an ``ignore``
                entry matching no module), before the model changed.
        """
        if self.spec is None or self.pruned:
            return False
        from ..api import prune  # late: prunekit.api imports most of prunekit

        result = prune(model, self.spec, ignore=self.ignore, inplace=True)
        self.pruned = True
        log.info("pruned one-shot to sparsity %.4f", result.summary().sparsity)
        return True

    def start(self, model: nn.Module, total: int) -> None:
        """Gradual mode: prepare a run of ``total`` units (applies the initial sparsity once
        per length of run; a resumed run keeps the sparsity restored by
        :meth:`load_state_dict`)."""
        if self.pruner is None or self._started_total == total:
            return
        current, updates = self.pruner.current, self.pruner.updates
        self.pruner.start(model, total)
        if current > self.pruner.current:  # resumed or refit: never go back down
            self.pruner.current, self.pruner.updates = current, updates
        self._started_total = total

    def advance(self, model: nn.Module, step: int, total: int) -> bool:
        """Gradual mode: re-prune ``model`` if ``step`` of ``total`` is an update step.

        Returns:
            Whether the masks changed.
        """
        if self.pruner is None:
            return False
        self.start(model, total)
        changed = self.pruner(model, step, total)
        if changed:
            log.info("gradual pruning at %s %d of %d: sparsity %.4f (%.4f of masked weights)",
                     self.unit, step, total, self.pruner.current, mask_sparsity(model))
        return changed

    def resume_from_schedule(self, step: int, total: int) -> None:
        """Gradual mode: set the sparsity already reached before ``step`` from the schedule
        alone (for frameworks whose checkpoints hold no callback state)."""
        if self.pruner is None or self.schedule is None:
            return
        due = [s for s in self.schedule.update_steps(total) if s < step]
        reached = max([self.schedule.sparsity_at(s, total) for s in due],
                      default=self.schedule.initial_sparsity)
        self.pruner.current = max(self.pruner.current, reached)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume: plain numbers only."""
        current = self.pruner.current if self.pruner is not None else 0.0
        updates = self.pruner.updates if self.pruner is not None else 0
        return {"pruned": self.pruned, "sparsity": current, "updates": updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (from a checkpoint)."""
        self.pruned = bool(state.get("pruned", False))
        if self.pruner is not None:
            self.pruner.current = float(state.get("sparsity", 0.0))
            self.pruner.updates = int(state.get("updates", 0))
        self._started_total = None
