"""One-shot, calibrated pruning to the masked end state: Wanda and SparseGPT.

Validation happens first (calibration present, spec supported, layers prunable); then the
model (or its copy) is calibrated block by block and each targeted weight gets a mask
(and, for SparseGPT, reconstructed values), giving the same masked end state as any other
prunekit result: ``finalize``, saving and sparse conversion work unchanged. The walk is in
:mod:`.walk`, the pruning of each layer in :mod:`.layers`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from ..errors import ShapeError, SpecError, TargetError
from ..inputs import ExampleInputs, check_same_output_shapes, run_example
from ..plan import Plan
from ..result import PruneResult
from ..specs import NM, Unstructured
from ..summary import count_parameters, layer_infos
from ..targets import IgnoreEntry, Target, qualified_name, resolve_overrides, resolve_targets
from ..unstructured import check_finite
from .calibration import check_calibration, check_token_ids
from .layers import OneShotSettings, hf_conv1d_type, layer_matrix
from .walk import calibrate_and_prune


def _tied(model: nn.Module) -> dict[int, list[str]]:
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append(qualified_name(name, pname))
    return owners


def oneshot_targets(
    model: nn.Module, ignore: Iterable[IgnoreEntry]
) -> tuple[list[Target], dict[str, str]]:
    """Linear (and Hugging Face Conv1D) weights to prune; tied weights are left alone.

    Raises:
        TargetError: nothing prunable remains.
    """
    targets, skipped = resolve_targets(model, ignore=ignore, types=(nn.Linear,) + hf_conv1d_type())
    owners = _tied(model)
    kept = []
    for t in targets:
        orig = getattr(t.module, "weight_orig", None)
        weight = orig if orig is not None else t.module.weight
        sharing = [n for n in owners.get(id(weight), []) if n.rpartition(".")[0] != t.module_name]
        if sharing:
            skipped[t.module_name] = f"weight tied to {', '.join(sharing)}"
        else:
            kept.append(t)
    if not kept:
        raise TargetError("no untied Linear layer left to prune", "check the ignore list")
    return kept, skipped


def _check_spec(spec: Unstructured | NM, overrides: Mapping[str, float] | None) -> None:
    if isinstance(spec, Unstructured) and spec.threshold is not None:
        raise SpecError(
            f"{spec.importance} prunes to a sparsity, not a threshold",
            f"use Unstructured(sparsity=0.5, importance={spec.importance!r})",
        )
    if isinstance(spec, Unstructured) and spec.scope != "layer":
        raise SpecError(
            f"{spec.importance} compares weights within each layer; scope={spec.scope!r} "
            "is not supported",
            "use scope='layer' (per-layer sparsity can be set with overrides=)",
        )
    if isinstance(spec, Unstructured) and spec.allocation != "uniform" and overrides:
        raise SpecError(
            f"allocation={spec.allocation!r} chooses every layer's sparsity; "
            "overrides= would fight it",
            "drop overrides= or use allocation='uniform'",
        )
    if isinstance(spec, NM) and overrides:
        raise SpecError("per-layer overrides do not apply to N:M", "use ignore= to skip layers")


def _check_nm_widths(spec: NM, targets: list[Target]) -> None:
    bad = [
        f"{t.key} (input width {layer_matrix(t.module).shape[1]})"
        for t in targets
        if layer_matrix(t.module).shape[1] % spec.m
    ]
    if bad:
        raise ShapeError(
            f"N:M with m={spec.m} needs input widths divisible by {spec.m}: {', '.join(bad)}",
            "ignore these layers (ignore=[...]) or choose another m",
        )


def prune_oneshot(
    model: nn.Module,
    spec: Unstructured | NM,
    example_inputs: ExampleInputs | None,
    *,
    ignore: Iterable[IgnoreEntry] = (),
    overrides: Mapping[str, float] | None = None,
    calibration: Any = None,
    inplace: bool = False,
    seed: int = 0,
) -> PruneResult:
    """Prune with Wanda or SparseGPT (``spec.importance``) using calibration batches.

    Args:
        model: the model; Linear layers (and Hugging Face Conv1D) are pruned.
        spec: ``Unstructured(sparsity=..., importance="wanda"|"sparsegpt")`` (optionally
            ``allocation="owl"``) or ``NM(2, 4, importance=...)``.
        example_inputs: optional; checked to run with unchanged output shapes after.
        ignore: layers to leave alone.
        overrides: ``{name or regex: sparsity}`` per-layer sparsities (unstructured only).
        calibration: list of batches the model accepts (tensors or dicts of kwargs).
        inplace: mutate ``model`` instead of a copy.
        seed: unused (both methods are deterministic); kept for a uniform signature.

    Returns:
        A :class:`PruneResult` in the masked end state.

    Raises:
        CalibrationError: calibration missing, empty, or not runnable by the model.
        SpecError / TargetError / ShapeError / WeightError: bad request, before mutation.
    """
    del seed
    batches = check_calibration(calibration, spec.importance)
    check_token_ids(model, batches)
    _check_spec(spec, overrides)
    targets, skipped = oneshot_targets(model, ignore)
    resolved = resolve_overrides(model, targets, overrides)
    check_finite(targets)
    if isinstance(spec, NM):
        _check_nm_widths(spec, targets)
    outputs_before = run_example(model, example_inputs) if example_inputs is not None else None
    default = spec.sparsity if spec.sparsity is not None else 0.0
    settings = OneShotSettings(
        method=spec.importance,
        sparsity={t.key: resolved.get(t.key, default) for t in targets},
        nm=(spec.n_keep, spec.m) if isinstance(spec, NM) else None,
        allocation=spec.allocation if isinstance(spec, Unstructured) else "uniform",
        bias_correction=spec.bias_correction,
        reconstruct=spec.reconstruct,
    )
    names = [t.module_name for t in targets]
    layers_before = layer_infos(model, names + list(skipped))
    params_before = count_parameters(model)
    work = model if inplace else copy.deepcopy(model)
    masks = calibrate_and_prune(work, [t.key for t in targets], batches, settings)
    plan = Plan(
        spec=spec.to_dict(), masks=masks, shapes={k: list(m.shape) for k, m in masks.items()},
        skipped=dict(skipped),
    )
    if outputs_before is not None and example_inputs is not None:
        check_same_output_shapes(outputs_before, run_example(work, example_inputs), "pruning")
    return PruneResult(work, plan, spec, layers_before, params_before)
