"""Structured pruning end to end: analyse, score, select, cut, verify.

Every check runs before the model is mutated: spec, ignore entries, finite weights, example
inputs (they must run), coupling (unknown ops raise). The common skeleton
(:func:`prunekit.pipeline.run`) then cuts a copy, or the model itself with a snapshot, and
the example inputs are run again: every output must keep its shape, and parameters must drop
when anything was removed.

Some models compute a reshape size from one tensor and apply it to another (Swin's attention
splits ``qkv`` with the *input's* width). Such a coupling is invisible to a trace; it shows up
as a failing forward pass after surgery. Then the cut is undone, the channels read inside the
failing module's class are pinned and the selection is redone, a few times at most; if that
does not help, a :class:`~prunekit.errors.PruningBrokeModelError` names the module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .apply.masks import masked_modules
from .apply.surgery.slicing import finish, install, kept_indices, sliced_tensors
from .budget.planner import BudgetPlanner
from .budget.report import BudgetPlan, BudgetResult
from .budget.sensitivity import group_weights, scan
from .budget.targets import Latency
from .budget.timing import check_device
from .errors import (
    BUG_HINT,
    CouplingError,
    ExampleInputError,
    InternalError,
    PrunekitError,
    PruningBrokeModelError,
    UnsupportedModelError,
)
from .graph.groups import Analysis, analyze
from .graph.state import OUT
from .importance.channel import channel_scores
from .inputs import ExampleInputs, example_input_error
from .pipeline import ModelSnapshot, Request, run
from .pipeline.verify import check_still_runs
from .plan import Plan
from .result import PruneResult
from .select.structured import GroupChoice, kept_heads, select_channels
from .specs import CALIBRATED_IMPORTANCE, Structured
from .summary import count_parameters, layer_infos
from .targets import IgnoreEntry, Target, resolve_overrides, resolve_targets
from .unstructured import check_finite

log = logging.getLogger(__name__)
MAX_RETRIES = 4
SENSITIVITY_BATCHES = 8  # calibration batches a budget's sensitivity scan runs


@dataclass
class Decision:
    """Removal mask plus what it means for tensors and module attributes."""

    removed: torch.Tensor
    kept: dict[str, dict[int, list[int]]]
    head_attrs: dict[str, dict[str, int]]


def _analyze(
    model: nn.Module, example_inputs: ExampleInputs, ignore: list[IgnoreEntry]
) -> Analysis:
    try:
        return analyze(model, example_inputs, ignore)
    except PrunekitError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported the same way
        raise example_input_error(exc) from exc


def _choices(analysis: Analysis, overrides: dict[str, float],
             weights: dict[int, float] | None = None) -> list[GroupChoice]:
    """The groups as selection sees them. A budget weighs a group's channels by ``weights``
    (measured sensitivity) when given, else by the number of layers producing the group."""
    choices = []
    for group in analysis.groups:
        share = None
        for member in group.members:
            if member.role == OUT and member.key in overrides:
                share = overrides[member.key]
        producers = {member.key for member in group.members if member.role == OUT}
        weight = float(max(len(producers), 1)) if weights is None else weights.get(
            group.index, 1.0)
        choices.append(GroupChoice(group.channels, analysis.frozen[group.channels], group.unit,
                                   share, weight))
    return choices


def _decide(analysis: Analysis, spec: Structured, scores: torch.Tensor,
            overrides: dict[str, float], budget: BudgetPlanner | None = None,
            weights: dict[int, float] | None = None) -> Decision:
    choices = _choices(analysis, overrides, weights)
    if budget is not None:
        return decision_for(analysis, budget.removed(choices))
    removed = select_channels(
        choices, scores, sparsity=spec.sparsity, threshold=spec.threshold,
        scope=spec.scope, round_to=spec.round_to, min_channels=spec.min_channels,
    )
    return decision_for(analysis, removed)


def decision_for(analysis: Analysis, removed: torch.Tensor) -> Decision:
    """Kept indices and head counts implied by a channel removal mask."""
    kept = kept_indices(analysis.members, removed)
    head_attrs: dict[str, dict[str, int]] = {}
    for module, attr, heads in analysis.head_rules:
        count = kept_heads(heads, removed)
        previous = head_attrs.setdefault(module, {}).setdefault(attr, count)
        if previous != count:
            raise CouplingError(
                f"module {module!r}: its heads would be pruned unevenly ({previous} vs {count})",
                f"pass ignore=[{module!r}]",
            )
    return Decision(removed, kept, _with_widths(analysis, head_attrs))


WIDTH_ATTRS = ("all_head_size", "inner_dim")  # heads x head_dim, recomputed with the heads


def _with_widths(
    analysis: Analysis, head_attrs: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """Add ``all_head_size``-style attributes of modules whose head count changes."""
    result: dict[str, dict[str, int]] = {}
    for module, attrs in head_attrs.items():
        owner = analysis.modules.get(module)
        updated = dict(attrs)
        for attr, heads in attrs.items():
            old = getattr(owner, attr, None)
            if not isinstance(old, int) or old == heads:
                continue
            for width in WIDTH_ATTRS:
                value = getattr(owner, width, None)
                if isinstance(value, int) and value % old == 0:
                    updated[width] = value // old * heads
        if updated:
            result[module] = updated
    return result


def _failing_class(broken: PruningBrokeModelError) -> str | None:
    """Class of the innermost module whose forward raised the error behind ``broken``."""
    found = None
    tb = broken.__cause__.__traceback__ if broken.__cause__ is not None else None
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, nn.Module):
            found = type(candidate).__name__
        tb = tb.tb_next
    return found


def _cut(work: nn.Module, decision: Decision) -> dict[str, Any]:
    """Slice the decided tensors of ``work`` and fix its module attributes."""
    install(work, sliced_tensors(work, decision.kept))
    return finish(work, decision.kept, decision.head_attrs)


def _pin_failing_class(analysis: Analysis, broken: PruningBrokeModelError) -> str | None:
    """Freeze the channels read inside the module class whose forward failed.

    Returns:
        The class name, or None when there is nothing new to pin.
    """
    cls = _failing_class(broken)
    channels = analysis.class_channels.get(cls or "", torch.empty(0, dtype=torch.long))
    fresh = channels[~analysis.frozen[channels]] if channels.numel() else channels
    if cls is None or not fresh.numel():
        return None
    log.info("pinning %d channels used inside %s and retrying", fresh.numel(), cls)
    analysis.frozen[fresh] = True
    for group in analysis.groups:
        group.frozen = analysis.frozen[group.channels]
    return cls


def cut_with_retries(
    work: nn.Module, example_inputs: ExampleInputs, analysis: Analysis,
    choose: Callable[[Analysis], Decision], what: str,
) -> tuple[Decision, dict[str, Any]]:
    """Cut what ``choose`` decides; on a failing forward, pin the failing class and redo.

    A failed attempt is undone before the next one, so ``work`` ends either cut and
    verified or exactly as it came in.

    Raises:
        PruningBrokeModelError: the model still fails after pinning what can be pinned.
    """
    snapshot = ModelSnapshot(work)
    pinned: list[str] = []
    while True:
        decision = choose(analysis)
        try:
            attributes = _cut(work, decision)
            check_still_runs(work, example_inputs, analysis.outputs, what)
            return decision, attributes
        except PruningBrokeModelError as broken:
            snapshot.restore()
            cls = _pin_failing_class(analysis, broken) if len(pinned) < MAX_RETRIES else None
            if cls is None:
                raise PruningBrokeModelError(
                    f"{broken.message} (channels read inside {', '.join(pinned)} were kept "
                    "and it still failed)" if pinned else broken.message,
                    f"{BUG_HINT}. As a workaround, "
                    f"ignore=[{_failing_class(broken) or 'the module'}] leaves that module's "
                    "channels alone",
                ) from broken.__cause__
            pinned.append(cls)
        except BaseException:
            snapshot.restore()
            raise


def remove_channels(
    model: nn.Module,
    example_inputs: ExampleInputs,
    analysis: Analysis,
    removed: torch.Tensor,
    *,
    inplace: bool = False,
) -> nn.Module:
    """Remove the channels marked in ``removed`` (no scoring).

    Channels that turn out to be pinned after a failed try (see the module docstring) are
    kept.

    Args:
        model: the model ``analysis`` was made on.
        example_inputs: inputs used to verify the result.
        analysis: from :func:`prunekit.graph.groups.analyze`.
        removed: ``(analysis.num_channels,)`` bool; frozen channels must not be marked.
        inplace: cut ``model`` itself (restored on failure) instead of a copy.

    Returns:
        The pruned model (a copy unless ``inplace``).

    Raises:
        CouplingError: a frozen channel is marked.
        PruningBrokeModelError: the pruned model fails to run.
    """
    pipeline = _RemoveChannels(example_inputs, analysis, removed)
    return run(pipeline, model, inplace=inplace)


class _RemoveChannels:
    """Cut a given channel selection (the scoring-free core of structured pruning)."""

    name = "structured pruning"

    def __init__(self, example_inputs: ExampleInputs, analysis: Analysis,
                 removed: torch.Tensor) -> None:
        self.example_inputs, self.analysis, self.removed = example_inputs, analysis, removed

    def prepare(self, model: nn.Module) -> None:
        if bool((self.removed & self.analysis.frozen).any()):
            raise CouplingError("some channels marked for removal are frozen (outputs, ignored "
                                "modules or channels mixed by an op)")

    def writes(self) -> list[str]:
        return []  # surgery gives tensors new data; it never writes into the old

    def mutate(self, work: nn.Module) -> None:
        cut_with_retries(work, self.example_inputs, self.analysis,
                         lambda current: decision_for(current, self.removed & ~current.frozen),
                         self.name)

    def verify(self, work: nn.Module) -> None:
        check_still_runs(work, self.example_inputs, self.analysis.outputs, self.name)

    def result(self, work: nn.Module) -> nn.Module:
        return work


def _check_finite(targets: list[Target]) -> None:
    """Cheap pass first (one sum per weight); the full check only to name the culprits."""
    for target in targets:
        weight = getattr(target.module, target.param, None)
        if not isinstance(weight, torch.Tensor) or not bool(torch.isfinite(weight.detach().sum())):
            check_finite(targets)
            return


def refuse_masked(model: nn.Module, what: str) -> None:
    """Physical surgery needs plain weights: a masked model must be finalized first.

    Raises:
        UnsupportedModelError: naming the masked layers and ``pk.finalize``.
    """
    masked = [name or "(root)" for name, _, _ in masked_modules(model)]
    if masked:
        more = f" and {len(masked) - 3} more" if len(masked) > 3 else ""
        raise UnsupportedModelError(
            f"{what} needs plain weights, and the model carries pruning masks "
            f"({', '.join(masked[:3])}{more})",
            "call pk.finalize(model) first to bake the masks in",
        )


class StructuredPipeline:
    """Remove whole channels, filters, heads and neurons (see :func:`prunekit.prune`).

    Args:
        spec: the :class:`Structured` spec.
        request: example inputs (required: the model is traced on them), ignore list,
            overrides per producer layer, calibration batches for ``importance="taylor"``.
    """

    name = "structured pruning"

    def __init__(self, spec: Structured, request: Request) -> None:
        self.spec = spec
        self.request = request
        self.budget: BudgetPlanner | None = None

    def prepare(self, model: nn.Module) -> None:
        request, spec = self.request, self.spec
        uses_data = spec.importance in CALIBRATED_IMPORTANCE or spec.target is not None
        request.refuse_unused(("overrides",) + (("calibration",) if uses_data else ()),
                              f"structured pruning with importance={spec.importance!r}")
        if request.example_inputs is None:
            needs = ("a latency target times the model on them, and " if isinstance(
                spec.target, Latency) else "")
            raise ExampleInputError(
                f"structured pruning needs example_inputs: {needs}the model is traced on them",
                "pass example_inputs=torch.randn(1, 3, 224, 224) or whatever the model accepts",
            )
        if isinstance(spec.target, Latency):
            check_device(spec.target)
        self.example_inputs: ExampleInputs = request.example_inputs
        refuse_masked(model, self.name)
        entries = list(request.ignore)
        targets, skipped = resolve_targets(model, ignore=entries)
        overrides = resolve_overrides(model, targets, request.overrides)
        _check_finite(targets)
        self.analysis = _analyze(model, request.example_inputs, entries)
        batches = request.calibration if request.calibration is not None else [
            request.example_inputs]
        if spec.target is not None and request.calibration is not None:
            batches = list(batches)  # read twice: importance, then sensitivity
        scores = channel_scores(spec.importance, self.analysis, model, batches=batches,
                                seed=request.seed)
        weights = None
        if spec.target is not None:
            weights = self._sensitivity(model, scores, batches)
            self.budget = BudgetPlanner(
                spec.target, model, self.analysis, request.example_inputs, scores,
                _choices(self.analysis, overrides, weights), round_to=spec.round_to,
                min_channels=spec.min_channels)
        self.choose: Callable[[Analysis], Decision] = (
            lambda current: _decide(current, spec, scores, overrides, self.budget, weights))
        self.choose(self.analysis)  # an impossible selection is refused before any cut
        self.skipped = skipped
        self.layers_before = layer_infos(model, [t.module_name for t in targets] + list(skipped))
        self.params_before = count_parameters(model)

    def _sensitivity(self, model: nn.Module, scores: torch.Tensor,
                     batches: Any) -> dict[int, float] | None:
        """Per group, its measured loss sensitivity, when calibration batches were given."""
        if self.request.calibration is None:
            return None
        report = scan(model, self.analysis, scores, list(batches)[:SENSITIVITY_BATCHES])
        log.info("budget weighted by sensitivity:\n%s", report.table())
        return group_weights(report, self.analysis.groups)

    def writes(self) -> list[str]:
        return []  # surgery gives tensors new data; it never writes into the old

    def mutate(self, work: nn.Module) -> None:
        def cut_once() -> tuple[Decision, dict[str, Any]]:
            return cut_with_retries(work, self.example_inputs, self.analysis, self.choose,
                                    self.name)

        if self.budget is None:
            self.decision, self.attributes = cut_once()
        else:  # measured, and cut again when the measurement misses the target
            self.decision, self.attributes = self.budget.cut(
                work, cut_once, lambda made: made[0].removed)

    def verify(self, work: nn.Module) -> None:
        check_still_runs(work, self.example_inputs, self.analysis.outputs, self.name)
        if bool(self.decision.removed.any()) and count_parameters(work) >= self.params_before:
            raise InternalError("structured pruning removed channels but no parameter", BUG_HINT)

    def result(self, work: nn.Module) -> PruneResult:
        fields: dict[str, Any] = dict(
            spec=self.spec.to_dict(),
            kept=self.decision.kept,
            shapes={k: list(t.shape) for k, t in work.state_dict().items()},
            attributes=self.attributes,
            skipped=self.skipped,
        )
        log.info("structured pruning removed %d of %d channels",
                 int(self.decision.removed.sum()), self.analysis.num_channels)
        report = self.budget.report if self.budget is not None else None
        if report is None:
            return PruneResult(work, Plan(**fields), self.spec, self.layers_before,
                               self.params_before)
        log.info("%s", report)
        return BudgetResult(work, BudgetPlan(**fields, budget=report.to_dict()), self.spec,
                            self.layers_before, self.params_before, report)
