"""Run a comparison: dense baseline, then prune -> evaluate -> fine-tune -> evaluate -> save ->
measure for each variant, keeping every finished result on disk."""

from __future__ import annotations

import copy
import json
import logging
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.bundle import DataBundle
from ..depth.result import DepthResult
from ..errors import PrunekitError
from ..measure.accuracy import evaluate_accuracy
from ..measure.latency import fixed_threads
from .baseline import discard_cached_baseline, ensure_baseline, shipped_files
from .control import CONTROL_FAMILY, CONTROL_NAME, run_control
from .gradual import training_start
from .measuring import MeasureContext, measure_model
from .pipeline import (
    calibration_batches,
    deployable,
    depth_record,
    layer_table,
    prune_variant,
    save_bytes,
)
from .recovery import finetune_record, recover
from .settings import DEFAULT_MODEL, CompareSettings
from .store import ResultStore
from .variants import Variant

log = logging.getLogger(__name__)


def _inputs(data: DataBundle, batches: tuple[int, ...]) -> dict[int, torch.Tensor]:
    collected: list[torch.Tensor] = []
    for x, _ in data.test:
        collected.append(x)
        if sum(t.shape[0] for t in collected) >= max(batches):
            break
    pool = torch.cat(collected)
    return {b: pool[:b].contiguous() for b in batches}


def environment(settings: CompareSettings) -> dict[str, Any]:
    """Versions, CPU, threads and GPU of the run, for results.json."""
    return {
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "threads": settings.threads,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def load_dense(
    factory: Callable[[], nn.Module], data: DataBundle, settings: CompareSettings,
    retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The dense baseline of a comparison: shipped, cached in ``--out``, or trained.

    Args:
        factory: builds the untrained model (seeded with ``settings.seed``).
        data: training data (used only when the baseline must be trained).
        settings: the run's settings.
        retrain: train even if a checkpoint exists.

    Returns:
        ``(model, card)``: the model in eval mode (channels_last) and its baseline card.

    Raises:
        FormatError: a checkpoint exists but does not fit the model.
    """
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        model = factory()
    model = model.to(memory_format=torch.channels_last)
    default = settings.model_ref == DEFAULT_MODEL and settings.dataset_ref is None
    card = ensure_baseline(
        model, data, cache_stem=settings.out_dir / "baseline" / "model",
        shipped=shipped_files(DEFAULT_MODEL) if default else None,
        quick=settings.quick, retrain=retrain, progress=settings.progress,
    )
    return model.eval(), card


def _dense_row(dense: nn.Module, data: DataBundle, ctx: MeasureContext,
               settings: CompareSettings, card: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": "dense", "family": "dense", "status": "done",
                           "baseline": {k: v for k, v in card.items() if k != "config"}}
    row["accuracy"] = evaluate_accuracy(dense, data.test, progress=settings.progress,
                                        description="evaluate dense")
    row.update(measure_model(ctx.dense, ctx))
    row["disk"] = save_bytes(dense, settings.out_dir / "models" / "dense", settings.model_ref)
    row["layers"] = layer_table(ctx.dense, ctx.dense)
    return row


def run_variant(variant: Variant, dense: nn.Module, data: DataBundle, ctx: MeasureContext,
                settings: CompareSettings,
                calibration: list[torch.Tensor] | None = None) -> dict[str, Any]:
    """Prune, evaluate, fine-tune, evaluate, save and measure one variant.

    ``calibration``: input batches for a variant that measures what to remove (default: the
    first training batches, :func:`~prunekit.compare.pipeline.calibration_batches`).
    """
    start = time.perf_counter()
    example = ctx.inputs[min(ctx.inputs)]
    # selection code may .view() weights: hand it the contiguous layout
    contiguous = dense.to(memory_format=torch.contiguous_format)
    if variant.calibrated and calibration is None:
        calibration = calibration_batches(data.train)
    result = prune_variant(contiguous, variant, example, seed=settings.seed,
                           calibration=calibration)
    model = result.model.to(memory_format=torch.channels_last)
    row: dict[str, Any] = {"name": variant.name, "family": variant.family,
                           "sparsity": variant.sparsity,
                           "specs": [s.to_dict() for s in variant.specs]}
    if isinstance(result, DepthResult):
        row["depth"] = depth_record(result)
    row["accuracy_before"] = evaluate_accuracy(model, data.test, progress=settings.progress,
                                               description=f"evaluate {variant.name}")
    begin = training_start(contiguous, variant, result, example, gradual=settings.gradual,
                           fade=settings.fade, seed=settings.seed)
    report = recover(begin.model, data, settings, teacher=dense, pruner=begin.pruner,
                     description=f"fine-tune {variant.name}")
    result = begin.finish(result)
    model = result.model
    row["finetune"] = finetune_record(report, settings, begin.describe())
    row["accuracy"] = evaluate_accuracy(model, data.test, progress=settings.progress,
                                        description=f"evaluate {variant.name}")
    row["disk"] = save_bytes(result, settings.out_dir / "models" / variant.name,
                             settings.model_ref)
    deploy = deployable(model)
    row.update(measure_model(deploy, ctx))
    row["layers"] = layer_table(deploy, ctx.dense)
    row["seconds"] = round(time.perf_counter() - start, 1)
    row["status"] = "done"
    return row


def failed_row(name: str, family: str, sparsity: float, exc: BaseException) -> dict[str, Any]:
    """The results row of a run that raised ``exc`` (logged; the comparison goes on)."""
    log.warning("%s failed: %s", name, exc)
    message = exc.message if isinstance(exc, PrunekitError) else f"{type(exc).__name__}: {exc}"
    return {"name": name, "family": family, "sparsity": sparsity, "status": "failed",
            "error": message}


FAILURES = (PrunekitError, ImportError, RuntimeError)  # recorded; the run goes on


def _same_recipe(row: dict[str, Any], variant: Variant) -> bool:
    """A finished row is reused only if it was pruned with the recipe the name stands for
    now (a name whose recipe changed between versions is run again)."""
    same = row.get("specs") == json.loads(json.dumps([s.to_dict() for s in variant.specs]))
    if not same:
        log.info("%s was finished with another recipe (%s): running it again", variant.name,
                 row.get("specs"))
    return same


def run_comparison(
    settings: CompareSettings,
    model_factory: Callable[[], nn.Module],
    data: DataBundle,
    *,
    retrain_baseline: bool = False,
    fresh: bool = False,
    on_variant: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every variant of ``settings`` and return the results (also in results.json).

    Finished variants are written to ``settings.out_dir/results.json`` at once, so an
    interruption loses only the variant in progress; a rerun with the same settings reuses
    them. Results made with other settings are never dropped silently: the run refuses to
    start unless ``fresh`` is set. A variant that fails is recorded with its error and the
    run goes on.

    Args:
        settings: what to run.
        model_factory: builds the (untrained) model.
        data: training and test batches.
        retrain_baseline: train the dense model even if a checkpoint exists.
        fresh: discard the results (and the cached baseline) already in ``out_dir``
            instead of resuming them; what is discarded is logged.
        on_variant: called with each finished row (dense first, then the dense control).

    Returns:
        The results document (see :class:`ResultStore`).

    Raises:
        ArtifactExistsError: ``out_dir`` holds results made with other settings and
            ``fresh`` is not set (nothing has been run or written).
        FormatError: ``out_dir``'s results.json or cached baseline is unreadable.
    """
    store = ResultStore(settings.out_dir, settings.fingerprint())
    reused = store.resume(fresh=fresh)
    if fresh:
        discard_cached_baseline(settings.out_dir / "baseline" / "model")
    store.data["environment"] = environment(settings)
    store.data["requested"] = [v.name for v in settings.variants]
    store.data["interrupted"] = False
    try:
        with fixed_threads(settings.threads):
            _run_all(settings, model_factory, data, store, reused, retrain_baseline, on_variant)
    except KeyboardInterrupt:
        store.data["interrupted"] = True
        store.save()
        raise
    return store.data


def _run_all(
    settings: CompareSettings,
    model_factory: Callable[[], nn.Module],
    data: DataBundle,
    store: ResultStore,
    reused: list[str],
    retrain_baseline: bool,
    on_variant: Callable[[dict[str, Any]], None] | None,
) -> None:
    dense, card = load_dense(model_factory, data, settings, retrain_baseline)
    # read once, before any fine-tuning changes the loader's settings: every variant that
    # measures gets the same batches, whatever runs before it
    calibration = calibration_batches(data.train) if any(
        v.calibrated for v in settings.variants) else None
    store.data["baseline"] = {"source": card["source"], "path": card["path"]}
    ctx = MeasureContext.create(deployable(dense), _inputs(data, (1, 64)), settings.threads,
                                settings.latency_rounds)
    if store.data["dense"] is None:
        store.put_dense(_dense_row(dense, data, ctx, settings, card))
    if on_variant is not None:
        on_variant(store.data["dense"])
    if (store.data.get("control") or {}).get("status") != "done":
        try:
            control = run_control(dense, data, ctx, settings)
        except FAILURES as exc:
            control = failed_row(CONTROL_NAME, CONTROL_FAMILY, 0.0, exc)
        store.put_control(control)
    if on_variant is not None:
        on_variant(store.data["control"])
    bar = tqdm(settings.variants, desc="variants", disable=not settings.progress, leave=False)
    for variant in bar:
        bar.set_postfix(variant=variant.name)
        if variant.name in reused and _same_recipe(store.data["variants"][variant.name],
                                                   variant):
            log.info("reusing finished results of %s", variant.name)
        else:
            try:
                row = run_variant(variant, copy.deepcopy(dense), data, ctx, settings,
                                  calibration)
            except FAILURES as exc:
                row = failed_row(variant.name, variant.family, variant.sparsity, exc)
            store.put_variant(variant.name, row)
        if on_variant is not None:
            on_variant(store.data["variants"][variant.name])
