"""The public entry points: :func:`prune` and friends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from .distributed.group import unwrap
from .errors import SpecError
from .inputs import ExampleInputs
from .pipeline import Pipeline, Request, run
from .plan import Plan
from .result import PruneResult, after_surgery, changes_shapes, model_of
from .specs import (
    CALIBRATED_IMPORTANCE,
    NM,
    Depth,
    Spec,
    Structured,
    TransformerStructured,
    Unstructured,
)
from .targets import IgnoreEntry, ignore_entries
from .unstructured import ApplyPlanPipeline, MaskedPipeline


def prune(
    model: nn.Module | PruneResult,
    spec: Spec,
    example_inputs: ExampleInputs | None = None,
    *,
    ignore: Iterable[IgnoreEntry] | IgnoreEntry = (),
    overrides: Mapping[IgnoreEntry, float] | None = None,
    include_embeddings: bool = False,
    calibration: Any = None,
    inplace: bool = False,
    seed: int = 0,
) -> PruneResult:
    """Prune ``model`` according to ``spec``.

    Unstructured and N:M specs give the *masked* end state (same shapes, a mask per weight;
    call :func:`finalize` to bake the zeros in). A :class:`Structured` spec gives a
    physically smaller dense model; a :class:`Depth` spec removes whole residual blocks.

    Args:
        model: any ``nn.Module``, or a :class:`PruneResult` to prune its model further
            (masks on a structurally pruned result give one combined plan, which
            :func:`prunekit.save` / :func:`prunekit.load` round-trip).
        spec: :class:`Unstructured`, :class:`NM`, :class:`Structured`, :class:`Depth`
            (whole residual blocks), or :class:`TransformerStructured` (heads / neurons /
            blocks of a Hugging Face model).
        example_inputs: inputs the model accepts (tensor, tuple of args or dict of kwargs).
            Required for structured and depth pruning; otherwise used to check the model still runs
            with the same output shapes.
        ignore: module names (each covers its children), module types or compiled regexes
            (``re.compile(...)``, matched in full) to leave alone; one entry or a list.
        overrides: ``{module name, type or compiled regex: sparsity}`` per-layer sparsities.
        include_embeddings: also prune ``nn.Embedding`` weights (unstructured).
        calibration: calibration batches for data-aware importance (wanda, sparsegpt, taylor)
            and for choosing residual blocks by their influence (:class:`Depth`).
            An argument the chosen method would not use (``calibration=`` for magnitude
            pruning, ``include_embeddings=`` for structured pruning) is refused.
        inplace: mutate ``model`` instead of a copy; any failure restores it exactly.
        seed: seed for random importance and any sampling.

    Returns:
        A :class:`PruneResult` with ``.model``, ``.plan`` and ``.summary()``.

    Raises:
        PrunekitError: a typed subclass naming the problem in the input, before ``model``
            is touched (or with an in-place change undone).
        InternalError: a failure of prunekit itself (``PruningBrokeModelError`` when the
            pruned model no longer runs on ``example_inputs``); ``model`` is left as it was.

    Example:
        >>> import prunekit as pk, torch
        >>> result = pk.prune(torch.nn.Linear(8, 4), pk.Unstructured(sparsity=0.5))
        >>> result.summary().sparsity
        0.5
    """
    request = Request(example_inputs, ignore_entries(ignore), overrides, include_embeddings,
                      calibration, seed)
    result = run(pipeline_for(spec, request), _unwrapped(model_of(model)), inplace=inplace)
    if isinstance(model, PruneResult) and changes_shapes(model.plan) and not changes_shapes(
            result.plan):
        return after_surgery(model, result)  # masks on a smaller model: one combined plan
    return result


def _unwrapped(model: nn.Module) -> nn.Module:
    """``model``, refused when it is a data-parallel wrapper (its ``.module`` is pruned)."""
    if unwrap(model) is not model:
        raise SpecError(
            f"pk.prune got a {type(model).__name__} wrapper: its pruned copy could not be "
            "wrapped the same way",
            "prune the module it wraps (model.module; model._orig_mod for torch.compile) on "
            "every rank, then wrap the pruned model again",
        )
    return model


def pipeline_for(spec: Spec, request: Request) -> Pipeline[PruneResult]:
    """The pipeline that carries out ``spec`` (one per kind of pruning).

    Raises:
        SpecError: ``spec`` is not a prunekit spec.
    """
    if isinstance(spec, TransformerStructured):
        from .hf.prune import TransformerPipeline

        return TransformerPipeline(spec, request)
    if isinstance(spec, Depth):
        from .depth.pipeline import DepthPipeline

        return DepthPipeline(spec, request)
    if isinstance(spec, Structured):
        from .structured import StructuredPipeline

        return StructuredPipeline(spec, request)
    if isinstance(spec, (Unstructured, NM)) and spec.importance in CALIBRATED_IMPORTANCE:
        from .oneshot import OneShotPipeline

        return OneShotPipeline(spec, request)
    if isinstance(spec, (Unstructured, NM)):
        return MaskedPipeline(spec, request)
    raise SpecError(
        "spec must be Unstructured, NM or Structured (or Depth for whole residual blocks, "
        f"TransformerStructured for a Hugging Face transformer), got {type(spec).__name__}",
        "e.g. pk.Unstructured(sparsity=0.9)",
    )


def apply_plan(
    model: nn.Module | PruneResult, plan: Plan, *, inplace: bool = False
) -> nn.Module:
    """Apply a saved plan to a model of the same architecture: a mask plan (unstructured /
    N:M), or a depth plan (its blocks replaced by ``nn.Identity``).

    Args:
        model: a model of the architecture the plan was made on (dense or masked), or a
            :class:`PruneResult`.
        plan: a plan with ``masks``, or of a :class:`Depth` result (e.g.
            ``Plan.from_json(text)``).
        inplace: change ``model`` itself instead of a copy.

    Returns:
        The masked model, or the model without the plan's blocks.

    Raises:
        PlanError: the plan names a parameter the model lacks or of another shape, a block
            that is not a removable residual block of the model, or it is a structured
            plan (which holds shapes, not values).
    """
    from .depth.pipeline import is_depth_plan, replay

    if is_depth_plan(plan):
        return replay(model_of(model), plan, inplace=inplace)
    return run(ApplyPlanPipeline(plan), model_of(model), inplace=inplace)
