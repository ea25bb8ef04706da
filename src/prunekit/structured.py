"""Structured pruning end to end: analyse, score, select, cut, verify.

Every check runs before the model is mutated: spec, ignore entries, finite weights, example
inputs (they must run), coupling (unknown ops raise). Surgery then works on a deep copy (or,
with ``inplace=True``, on the model with a snapshot restored on any failure), and the example
inputs are run again: every output must keep its shape, and parameters must drop when
anything was removed.

Some models compute a reshape size from one tensor and apply it to another (Swin's attention
splits ``qkv`` with the *input's* width). Such a coupling is invisible to a trace; it shows up
as a failing forward pass after surgery. Then the channels read inside the failing module's
class are pinned and the selection is redone, a few times at most; if that does not help the
model is restored and a :class:`CouplingError` names the module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .apply.surgery.slicing import (
    finish,
    install,
    kept_indices,
    pruned_copy,
    restore,
    sliced_tensors,
    snapshot,
)
from .errors import CouplingError, ExampleInputError, PrunekitError
from .graph.groups import Analysis, analyze
from .graph.state import OUT
from .importance.channel import channel_scores
from .inputs import (
    ExampleInputs,
    call_model,
    check_same_output_shapes,
    eval_mode,
    example_input_error,
    flat_tensors,
)
from .plan import Plan
from .result import PruneResult
from .select.structured import GroupChoice, kept_heads, select_channels
from .specs import Structured
from .summary import count_parameters, layer_infos
from .targets import IgnoreEntry, Target, resolve_overrides, resolve_targets
from .unstructured import check_finite

log = logging.getLogger(__name__)
MAX_RETRIES = 4


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


def _choices(analysis: Analysis, overrides: dict[str, float]) -> list[GroupChoice]:
    choices = []
    for group in analysis.groups:
        share = None
        for member in group.members:
            if member.role == OUT and member.key in overrides:
                share = overrides[member.key]
        choices.append(GroupChoice(group.channels, analysis.frozen[group.channels], group.unit,
                                   share))
    return choices


def _decide(analysis: Analysis, spec: Structured, scores: torch.Tensor,
            overrides: dict[str, float]) -> Decision:
    removed = select_channels(
        _choices(analysis, overrides), scores, sparsity=spec.sparsity, threshold=spec.threshold,
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


def _run(model: nn.Module, example_inputs: ExampleInputs) -> list[torch.Tensor]:
    with torch.no_grad(), eval_mode(model):
        return flat_tensors(call_model(model, example_inputs))


def _failing_class(exc: BaseException) -> str | None:
    """Class of the innermost module whose forward raised ``exc``."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, nn.Module):
            found = type(candidate).__name__
        tb = tb.tb_next
    return found


def _verify(work: nn.Module, example_inputs: ExampleInputs, analysis: Analysis,
            params_before: int, removed_any: bool) -> None:
    outputs = _run(work, example_inputs)
    check_same_output_shapes(analysis.outputs, outputs, "structured pruning")
    if removed_any and count_parameters(work) >= params_before:
        raise CouplingError("structured pruning removed channels but no parameter",
                            "this is a prunekit bug; please report it with the model")


def _attempt(model: nn.Module, decision: Decision, example_inputs: ExampleInputs,
             analysis: Analysis, inplace: bool) -> tuple[nn.Module, dict[str, Any]]:
    """Cut and verify; on failure restore (inplace) and re-raise."""
    params_before = count_parameters(model)
    new = sliced_tensors(model, decision.kept)
    work = model if inplace else pruned_copy(model, new)
    snap = snapshot(work, decision.kept, decision.head_attrs) if inplace else None
    try:
        if inplace:
            install(work, new)
        attributes = finish(work, decision.kept, decision.head_attrs)
        _verify(work, example_inputs, analysis, params_before, bool(decision.removed.any()))
    except BaseException:
        if snap is not None:
            restore(work, snap)
        raise
    return work, attributes


def _cut_with_retries(model: nn.Module, example_inputs: ExampleInputs, analysis: Analysis,
                      choose: Callable[[Analysis], Decision],
                      inplace: bool) -> tuple[nn.Module, Decision, dict[str, Any]]:
    """Cut what ``choose`` decides; on a failing forward pin the failing class and redo."""
    pinned: list[str] = []
    while True:
        decision = choose(analysis)
        try:
            work, attributes = _attempt(model, decision, example_inputs, analysis, inplace)
            return work, decision, attributes
        except Exception as exc:  # noqa: BLE001 - classified below
            cls = _failing_class(exc)
            channels = analysis.class_channels.get(cls or "", torch.empty(0, dtype=torch.long))
            fresh = channels[~analysis.frozen[channels]] if channels.numel() else channels
            if cls is None or len(pinned) >= MAX_RETRIES or not fresh.numel():
                raise CouplingError(
                    f"after structured pruning the model fails in a {cls or 'module'}: "
                    f"{type(exc).__name__}: {exc}",
                    f"pass ignore=[{cls}] (the module type) to leave it unpruned; the model "
                    "was left unchanged",
                ) from exc
            log.info("pinning %d channels used inside %s and retrying", fresh.numel(), cls)
            analysis.frozen[fresh] = True
            for group in analysis.groups:
                group.frozen = analysis.frozen[group.channels]
            pinned.append(cls)


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

    Returns:
        The pruned model (a copy unless ``inplace``).

    Raises:
        CouplingError: a frozen channel is marked, or the pruned model fails to run.
    """
    if bool((removed & analysis.frozen).any()):
        raise CouplingError("some channels marked for removal are frozen (outputs, ignored "
                            "modules or channels mixed by an op)")
    work, _, _ = _cut_with_retries(
        model, example_inputs, analysis,
        lambda current: decision_for(current, removed & ~current.frozen), inplace,
    )
    return work


def _check_finite(targets: list[Target]) -> None:
    """Cheap pass first (one sum per weight); the full check only to name the culprits."""
    for target in targets:
        weight = getattr(target.module, target.param, None)
        if not isinstance(weight, torch.Tensor) or not bool(torch.isfinite(weight.detach().sum())):
            check_finite(targets)
            return


def prune_structured(
    model: nn.Module,
    spec: Structured,
    example_inputs: ExampleInputs | None,
    *,
    ignore: Iterable[IgnoreEntry] = (),
    overrides: Mapping[str, float] | None = None,
    calibration: Any = None,
    inplace: bool = False,
    seed: int = 0,
) -> PruneResult:
    """Remove whole channels, filters, heads and neurons; see :func:`prunekit.prune`.

    Args:
        model: any module that runs forward on ``example_inputs``.
        spec: the :class:`Structured` spec.
        example_inputs: required; the model is traced on them.
        ignore: modules whose weights stay exactly as they are.
        overrides: ``{module name or regex: sparsity}`` per producer layer (layer scope).
        calibration: batches for ``importance="taylor"`` (default: the example inputs).
        inplace: mutate ``model`` (restored on failure) instead of a copy.
        seed: seed for ``importance="random"``.

    Returns:
        A :class:`PruneResult` whose plan records kept indices, shapes and changed attributes.

    Raises:
        ExampleInputError, TargetError, SpecError, UnsupportedModelError, CouplingError:
            before the model is changed (or with it restored).
    """
    if example_inputs is None:
        raise ExampleInputError(
            "structured pruning needs example_inputs to trace the model",
            "pass example_inputs=torch.randn(1, 3, 224, 224) or whatever the model accepts",
        )
    entries = list(ignore)
    targets, skipped = resolve_targets(model, ignore=entries)
    resolved = resolve_overrides(model, targets, overrides)
    _check_finite(targets)
    analysis = _analyze(model, example_inputs, entries)
    batches = calibration if calibration is not None else [example_inputs]
    scores = channel_scores(spec.importance, analysis, model, batches=batches, seed=seed)
    layers_before = layer_infos(model, [t.module_name for t in targets] + list(skipped))
    params_before = count_parameters(model)
    work, decision, attributes = _cut_with_retries(
        model, example_inputs, analysis,
        lambda current: _decide(current, spec, scores, resolved), inplace,
    )
    plan = Plan(
        spec=spec.to_dict(),
        kept=decision.kept,
        shapes={k: list(t.shape) for k, t in work.state_dict().items()},
        attributes=attributes,
        skipped=skipped,
    )
    log.info("structured pruning removed %d of %d channels", int(decision.removed.sum()),
             analysis.num_channels)
    return PruneResult(work, plan, spec, layers_before, params_before)
