"""Pruning one variant from the dense model, and the deployable copy that gets measured (for
a model with zeros inside its layers, also that copy through :func:`prunekit.to_sparse`)."""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..api import prune
from ..apply.masks import effective_weight, finalize
from ..depth.result import DepthResult
from ..errors import InternalError, PrunekitError
from ..result import PruneResult, model_of
from ..select.unstructured import removal_count
from ..sparse import kernels, to_sparse
from ..sparse.convert import SparseConversion
from ..specs import NM, Spec, Unstructured
from ..targets import resolve_targets
from .variants import Variant, needs_calibration

log = logging.getLogger(__name__)

ZEROS_INSIDE = 0.01  # a Linear / Conv2d weight with at least 1% zeros has sparse weights
# converted vs deployable outputs: the tolerance tests/sparse states for whole converted models
OUTPUT_RTOL, OUTPUT_ATOL = 1e-4, 1e-5
TIMED_SPARSE, TIMED_DEPLOYABLE = "to_sparse", "deployable"
CALIBRATION_BATCHES = 8  # training batches depth, Wanda and SparseGPT variants measure on
CONVERSION_FAILURES = (PrunekitError, RuntimeError)  # recorded; the deployable is timed


def nm_misfits(model: nn.Module, spec: NM) -> list[str]:
    """Prunable layers whose input width is not a multiple of ``spec.m`` (left dense)."""
    targets, _ = resolve_targets(model)
    return [
        t.module_name for t in targets
        if effective_weight(t.module, t.param).shape[t.input_dim] % spec.m
    ]


def emptied_rows(model: nn.Module, spec: Spec) -> list[str]:
    """Linear / Conv2d layers whose every weight row a per-layer calibrated spec (Wanda,
    SparseGPT at ``spec.sparsity``) would remove whole, e.g. a 1-channel 3x3 stem (rows of
    9 weights) at 95%: left dense, as the global L1 ranking of ``unstructured-P`` would
    keep much of such a layer. Empty for any other spec, and for ``allocation="global"``
    (each layer's sparsity is then its share of that ranking)."""
    if not (isinstance(spec, Unstructured) and needs_calibration(spec)
            and spec.sparsity is not None and spec.allocation != "global"):
        return []
    return [name for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d)) and _rows_emptied(module, spec.sparsity)]


def _rows_emptied(module: nn.Module, sparsity: float) -> bool:
    """True if removing ``sparsity`` of each weight row removes the whole row."""
    row = effective_weight(module)[0].numel()
    return removal_count(row, sparsity) >= row


def calibration_batches(batches: Iterable[Any], count: int = CALIBRATION_BATCHES
                        ) -> list[torch.Tensor]:
    """The inputs of the first ``count`` ``(inputs, labels)`` batches of the first epoch
    (the training data's: what a depth variant measures block influence on, and what
    Wanda and SparseGPT variants calibrate on).

    A loader that counts epochs (prunekit's own reshuffle by epoch) is read at epoch 0 and
    its count restored after, so every variant gets the same batches whatever ran before it,
    and the fine-tuning order is not changed.
    """
    epoch = getattr(batches, "epoch", None)
    if isinstance(epoch, int):
        batches.epoch = 0  # type: ignore[attr-defined]
    inputs = []
    try:
        for x, _ in batches:
            inputs.append(x.contiguous())
            if len(inputs) == count:
                break
    finally:
        if isinstance(epoch, int):
            batches.epoch = epoch  # type: ignore[attr-defined]
    return inputs


def _prune_once(model: nn.Module | PruneResult, spec: Spec, example: torch.Tensor, seed: int,
                calibration: list[torch.Tensor] | None) -> PruneResult:
    ignore: list[str] = nm_misfits(model_of(model), spec) if isinstance(spec, NM) else []
    if ignore:
        log.info("N:M leaves %s dense (input width not a multiple of m)", ignore)
    emptied = emptied_rows(model_of(model), spec)
    if emptied:
        log.info("%s leaves %s dense (every row would be removed whole)", spec, emptied)
    ignore += emptied
    return prune(model, spec, example, ignore=ignore, seed=seed,
                 calibration=calibration if needs_calibration(spec) else None)


def prune_variant(
    dense: nn.Module, variant: Variant, example: torch.Tensor, seed: int = 0,
    calibration: list[torch.Tensor] | None = None,
) -> PruneResult:
    """Apply the variant's specs in order to a copy of ``dense``.

    Args:
        dense: the trained dense model (not modified).
        variant: the recipe.
        example: example inputs (needed by structured pruning to trace the model).
        seed: pruning seed.
        calibration: input batches for specs that measure what to remove
            (:attr:`Variant.calibrated`; :func:`calibration_batches` of the training data).

    Returns:
        One :class:`PruneResult` (for combined variants: the structured surgery and the
        masks of the second step in one plan).
    """
    result: PruneResult | None = None
    for spec in variant.specs:  # a result pruned again carries the earlier surgery
        result = _prune_once(result or dense, spec, example, seed, calibration)
    assert result is not None, "a variant has at least one spec"
    return result


def depth_record(result: DepthResult) -> dict[str, Any]:
    """What a depth variant removed and measured: ``removed`` blocks, each block's
    ``influence`` alone and the output ``change`` of the removal (relative, on the
    calibration batches)."""
    return {"removed": list(result.plan.removed_modules), "influence": dict(result.influence),
            "change": result.change}


def deployable(model: nn.Module) -> nn.Module:
    """An eval-mode copy with masks baked in (what a dense runtime would execute)."""
    return finalize(copy.deepcopy(model)).eval()


def save_bytes(result: PruneResult | nn.Module, folder: Path, model_ref: str) -> dict[str, Any]:
    """Save in the prunekit format and return ``{"path", "bytes"}`` (or a reason it failed).

    Returns:
        ``{"path": str, "bytes": int}``, or ``{"error": str}`` if saving is unavailable.
    """
    try:
        from ..io import artifact_bytes, save
    except ImportError as exc:  # pragma: no cover - only before the io package exists
        return {"error": f"prunekit.io unavailable: {exc}"}
    ref = model_ref if ":" in model_ref else f"zoo:{model_ref}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = save(result, folder, overwrite=True, model_ref=ref)
    return {"path": str(path), "bytes": artifact_bytes(path)}


def layer_table(model: nn.Module, dense: nn.Module) -> list[dict[str, Any]]:
    """Per conv/linear layer: output width now and in the dense model, and weight sparsity."""
    dense_modules = dict(dense.named_modules())
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        weight = module.weight.detach()
        before = dense_modules.get(name)
        dense_width = before.weight.shape[0] if isinstance(before, (nn.Conv2d, nn.Linear)) else None
        rows.append({
            "name": name,
            "width": int(weight.shape[0]),
            "dense_width": int(dense_width) if dense_width is not None else None,
            "sparsity": float((weight == 0).sum()) / max(1, weight.numel()),
        })
    return rows


def has_sparse_weights(model: nn.Module) -> bool:
    """True if some ``nn.Linear`` or ``nn.Conv2d`` weight is at least 1% zeros (what
    :func:`prunekit.to_sparse` can skip): unstructured, N:M and combined variants."""
    return any(
        float((m.weight == 0).sum()) >= ZEROS_INSIDE * m.weight.numel()
        for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
    )


def kernels_missing() -> str | None:
    """Why the compiled sparse kernels cannot run here, or None if they can."""
    if kernels.available():
        return None
    return ("numba is not installed, so the sparse kernels are unavailable "
            "(pip install 'prunekit[kernels]')")


def sparse_deployable(deploy: nn.Module, x: torch.Tensor) -> tuple[nn.Module | None,
                                                                   dict[str, Any]]:
    """``deploy`` converted by :func:`prunekit.to_sparse` at the batch size of ``x``.

    The conversion times every layer at the input shape ``x`` gives it and swaps in the
    sparse layer only where it wins, so it is made once per batch size. It runs on a copy in
    the contiguous (NCHW) memory format: :class:`prunekit.sparse.CSRConv2d` takes and returns
    NCHW tensors, so the dense layers left around it run NCHW too.

    Args:
        deploy: the deployable model (masks baked in, eval mode; not modified).
        x: one input batch.

    Returns:
        ``(model, record)``: the converted model to time, or None where the deployable
        model is what should be timed (no layer went sparse, the kernels are unavailable,
        the conversion failed, or its outputs differ from ``deploy``'s); and what happened:
        ``converted``, ``timed`` (``"to_sparse"`` or ``"deployable"``), ``reason`` (why
        the deployable is timed, else None) and, after a conversion, ``convs`` / ``linears``
        (``{"sparse", "total"}``), ``kernels`` (kernel -> layers), ``max_abs_diff`` and the
        per-layer choices (``layers``).
    """
    missing = kernels_missing()
    if missing is not None:
        return None, _not_converted(missing)
    work = copy.deepcopy(deploy).to(memory_format=torch.contiguous_format)
    try:
        conversion = to_sparse(work, x, inplace=True)
    except CONVERSION_FAILURES as exc:
        message = exc.message if isinstance(exc, (PrunekitError, InternalError)) \
            else f"{type(exc).__name__}: {exc}"
        log.warning("to_sparse failed at batch %d: %s; timing the deployable model",
                    x.shape[0], message)
        return None, _not_converted(f"to_sparse failed: {message}")
    record = _conversion_record(deploy, conversion, x)
    if not record["converted"]:
        log.warning("at batch %d %s; timing the deployable model", x.shape[0], record["reason"])
    return (conversion.model if record["timed"] == TIMED_SPARSE else None), record


def _not_converted(reason: str) -> dict[str, Any]:
    return {"converted": False, "timed": TIMED_DEPLOYABLE, "reason": reason}


def _conversion_record(deploy: nn.Module, conversion: SparseConversion,
                       x: torch.Tensor) -> dict[str, Any]:
    """What a conversion swapped, and whether its outputs match the deployable model's."""
    with torch.inference_mode():
        expected, actual = deploy(x), conversion.model.eval()(x)
    diff = float((actual - expected).abs().max())
    swapped = conversion.kernels
    record: dict[str, Any] = {
        "converted": True, "timed": TIMED_SPARSE if swapped else TIMED_DEPLOYABLE,
        "reason": None if swapped else "no layer ran faster sparse",
        **_layer_counts(deploy, set(swapped)),
        "kernels": dict(Counter(swapped.values())), "max_abs_diff": diff,
        "layers": conversion.to_dict()["layers"],
    }
    if not torch.allclose(actual, expected, rtol=OUTPUT_RTOL, atol=OUTPUT_ATOL):
        record.update(converted=False, timed=TIMED_DEPLOYABLE,
                      reason=f"the converted outputs differ from the deployable model's by up "
                             f"to {diff:.3g} (over rtol {OUTPUT_RTOL:g}, atol "
                             f"{OUTPUT_ATOL:g})")
    return record


def _layer_counts(deploy: nn.Module, swapped: set[str]) -> dict[str, dict[str, int]]:
    """``{"convs": {"sparse", "total"}, "linears": {...}}`` over ``deploy``'s layers."""
    counts = {"convs": {"sparse": 0, "total": 0}, "linears": {"sparse": 0, "total": 0}}
    for name, module in deploy.named_modules():
        kind = "convs" if isinstance(module, nn.Conv2d) else \
            "linears" if isinstance(module, nn.Linear) else None
        if kind is not None:
            counts[kind]["total"] += 1
            counts[kind]["sparse"] += name in swapped
    return counts
