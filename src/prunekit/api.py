"""The public entry points: :func:`prune` and friends."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from .apply.masks import effective_weight
from .errors import PlanError, SpecError, UnsupportedModelError
from .inputs import ExampleInputs, check_same_output_shapes, record_calls, run_example
from .plan import Plan
from .result import PruneResult
from .specs import NM, Spec, Structured, Unstructured
from .summary import count_parameters, layer_infos
from .targets import IgnoreEntry, resolve_overrides, resolve_targets
from .unstructured import (
    IDLE_NOTE,
    apply_masks,
    check_finite,
    check_nm_shapes,
    idle_targets,
    plan_masks,
    restore_masks,
    snapshot_masks,
)


def prune(
    model: nn.Module,
    spec: Spec,
    example_inputs: ExampleInputs | None = None,
    *,
    ignore: Iterable[IgnoreEntry] = (),
    overrides: Mapping[str, float] | None = None,
    include_embeddings: bool = False,
    calibration: Any = None,
    inplace: bool = False,
    seed: int = 0,
) -> PruneResult:
    """Prune ``model`` according to ``spec``.

    Unstructured and N:M specs give the *masked* end state (same shapes, a mask per weight;
    call :func:`finalize` to bake the zeros in). A :class:`Structured` spec gives a
    physically smaller dense model.

    Args:
        model: any ``nn.Module``.
        spec: :class:`Unstructured`, :class:`NM`, :class:`Structured`, or
            :class:`TransformerStructured` (heads / neurons / blocks of a Hugging Face model).
        example_inputs: inputs the model accepts (tensor, tuple of args or dict of kwargs).
            Required for structured pruning; otherwise used to check the model still runs
            with the same output shapes.
        ignore: module names, module types or regexes to leave alone.
        overrides: ``{module name or regex: sparsity}`` per-layer sparsities.
        include_embeddings: also prune ``nn.Embedding`` weights (unstructured).
        calibration: calibration batches for data-aware importance (wanda, sparsegpt, taylor).
        inplace: mutate ``model`` instead of a copy.
        seed: seed for random importance and any sampling.

    Returns:
        A :class:`PruneResult` with ``.model``, ``.plan`` and ``.summary()``.

    Raises:
        PrunekitError: a typed subclass naming the problem, before ``model`` is touched.

    Example:
        >>> import prunekit as pk, torch
        >>> result = pk.prune(torch.nn.Linear(8, 4), pk.Unstructured(sparsity=0.5))
        >>> result.summary().sparsity
        0.5
    """
    if not isinstance(model, nn.Module):
        raise SpecError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    from .hf.spec import TransformerStructured

    if isinstance(spec, TransformerStructured):
        from .hf.prune import prune_transformer

        return prune_transformer(
            model, spec, example_inputs, ignore=ignore, overrides=overrides,
            calibration=calibration, inplace=inplace, seed=seed,
        )
    if not isinstance(spec, (Unstructured, NM, Structured)):
        raise SpecError(
            f"spec must be Unstructured, NM or Structured, got {type(spec).__name__}",
            "e.g. pk.Unstructured(sparsity=0.9)",
        )
    if isinstance(spec, Structured):
        from .structured import prune_structured

        return prune_structured(
            model, spec, example_inputs, ignore=ignore, overrides=overrides,
            calibration=calibration, inplace=inplace, seed=seed,
        )
    if spec.importance in ("wanda", "sparsegpt"):
        from .oneshot import prune_oneshot

        return prune_oneshot(
            model, spec, example_inputs, ignore=ignore, overrides=overrides,
            calibration=calibration, inplace=inplace, seed=seed,
        )
    return _prune_masked(
        model, spec, example_inputs, ignore=ignore, overrides=overrides,
        include_embeddings=include_embeddings, inplace=inplace, seed=seed,
    )


def _prune_masked(
    model: nn.Module,
    spec: Unstructured | NM,
    example_inputs: ExampleInputs | None,
    *,
    ignore: Iterable[IgnoreEntry],
    overrides: Mapping[str, float] | None,
    include_embeddings: bool,
    inplace: bool,
    seed: int,
) -> PruneResult:
    # Every check runs before the first mutation; the copy is made only once they pass.
    targets, skipped = resolve_targets(model, ignore=ignore, include_embeddings=include_embeddings)
    resolved_overrides = resolve_overrides(model, targets, overrides)
    check_finite(targets)
    if isinstance(spec, NM):
        check_nm_shapes(spec, targets)
    outputs_before, idle = None, []
    if example_inputs is not None:
        with record_calls({t.module_name: t.module for t in targets}) as called:
            outputs_before = run_example(model, example_inputs)
        idle = idle_targets(model, targets, called)
    plan = plan_masks(spec, targets, skipped, resolved_overrides, seed)
    plan.notes.update(dict.fromkeys(idle, IDLE_NOTE))

    listed = {t.module_name for t in targets} | set(skipped)
    layers_before = layer_infos(model, [n for n, _ in model.named_modules() if n in listed])
    params_before = count_parameters(model)
    work = model if inplace else copy_model(model)
    snapshot = snapshot_masks(work, plan)
    try:
        apply_masks(work, plan)
        if example_inputs is not None and outputs_before is not None:
            outputs_after = run_example(work, example_inputs)
            check_same_output_shapes(outputs_before, outputs_after, "pruning")
    except BaseException:
        restore_masks(work, snapshot)  # leave an in-place model as it was
        raise
    return PruneResult(work, plan, spec, layers_before, params_before)


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)``, with a typed error for models that cannot be copied.

    Raises:
        UnsupportedModelError: the model holds something deepcopy refuses (a lock, a file).
    """
    try:
        return copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - whatever the user's module holds
        raise UnsupportedModelError(
            f"cannot copy {type(model).__name__}: {type(exc).__name__}: {exc}",
            "pass inplace=True to prune the model itself instead of a copy",
        ) from exc


def apply_plan(model: nn.Module, plan: Plan, *, inplace: bool = False) -> nn.Module:
    """Apply a saved mask plan (unstructured / N:M) to a model of the same architecture.

    Args:
        model: a model of the architecture the plan was made on (dense or masked).
        plan: a plan with ``masks`` (e.g. ``Plan.from_json(text)``).
        inplace: mask ``model`` itself instead of a copy.

    Returns:
        The masked model.

    Raises:
        PlanError: the plan names a parameter the model lacks or of another shape, or it is
            a structured plan (which holds shapes, not values).
    """
    if plan.kept or plan.attributes or plan.removed_modules:
        raise PlanError(
            "apply_plan re-applies mask plans; this is a structured plan (new shapes, whose "
            "values come from the pruned weights)",
            "load the saved result with pk.load(path), or call "
            "prunekit.apply.surgery.rebuild.rebuild_pruned_architecture and then "
            "load_state_dict with the pruned weights",
        )
    problems = []
    for key, mask in plan.masks.items():
        module_name, _, param = key.rpartition(".")
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            problems.append(f"{key}: no such module")
            continue
        if not hasattr(module, param) and not hasattr(module, f"{param}_orig"):
            problems.append(f"{key}: no such parameter")
        elif (shape := tuple(effective_weight(module, param).shape)) != tuple(mask.shape):
            problems.append(f"{key}: model shape {shape} != plan shape {tuple(mask.shape)}")
    if problems:
        raise PlanError("the plan does not fit the model: " + "; ".join(problems))
    work = model if inplace else copy_model(model)
    apply_masks(work, plan)
    return work

