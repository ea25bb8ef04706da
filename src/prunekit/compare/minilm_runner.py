"""Run the sentence-encoder comparison: the dense encoder, the dense control, then every
variant pruned, distilled, evaluated, saved and measured, keeping each finished result on disk.

The results document has the layout of the image task's (:class:`ResultStore`), plus
``task``: the metric names, their labels and the batch sizes timed, which the report reads.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from ..measure.latency import fixed_threads
from .control import CONTROL_FAMILY, CONTROL_NAME
from .measuring import MeasureContext
from .minilm_budget import TextBudget, text_budget
from .minilm_eval import METRICS, Evaluator
from .minilm_model import PackedEncoder, TextTask, pack, token_batches, tokenize
from .minilm_pipeline import TextRun, control_row, dense_row, variant_row
from .pipeline import deployable
from .runner import FAILURES, environment, failed_row
from .settings import CompareSettings
from .store import ResultStore

log = logging.getLogger(__name__)
COMMAND = "prunekit compare --task minilm"


def task_record(task: TextTask, budget: TextBudget) -> dict[str, Any]:
    """The results document's ``task``: what the report names and how it formats it."""
    return {
        "name": "minilm", "model": task.model_name, "dataset": task.data.name,
        "primary": "cosine", "metrics": METRICS, "scale": 1.0,
        "batches": list(budget.latency_batches), "budget": budget.to_dict(),
        "data": task.data.info,
    }


def latency_inputs(task: TextTask, budget: TextBudget) -> dict[int, torch.Tensor]:
    """Packed held-out sentences, padded to ``budget.latency_length``, per timed batch size."""
    texts = task.data.held_out
    largest = max(budget.latency_batches)
    texts = (texts * (largest // max(1, len(texts)) + 1))[:largest]
    packed = pack(tokenize(task.tokenizer, texts, budget.latency_length, pad_to_max=True))
    return {b: packed[:b].contiguous() for b in budget.latency_batches}


def prepare(settings: CompareSettings, task: TextTask, budget: TextBudget,
            dense: torch.nn.Module) -> TextRun:
    """Tokenise the text and set up the evaluator and the latency context."""
    data, tokenizer = task.data, task.tokenizer
    evaluator = Evaluator(tokenizer, dense, data, budget.max_length, budget.document_length)
    ctx = MeasureContext.create(deployable(PackedEncoder(dense)), latency_inputs(task, budget),
                                settings.threads, budget.latency_rounds, budget.latency_warmup)
    return TextRun(
        settings=settings,
        calibration=token_batches(tokenizer, data.calibration, budget.batch, budget.max_length),
        train=token_batches(tokenizer, data.train, budget.batch, budget.train_length),
        evaluator=evaluator, ctx=ctx, model_ref=task.model_ref,
    )


def run_minilm_comparison(
    settings: CompareSettings,
    task: TextTask,
    *,
    fresh: bool = False,
    on_variant: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every variant of ``settings`` on the encoder of ``task``; return the results.

    Finished rows are written to ``settings.out_dir/results.json`` at once, and a rerun
    with the same settings reuses them, as in :func:`prunekit.compare.run_comparison`. A
    variant that fails is recorded with its error and the run goes on.

    Args:
        settings: what to run (``task="minilm"``; ``epochs`` / ``lr``: the distillation's).
        task: the tokenizer, encoder and text.
        fresh: discard the results already in ``out_dir`` instead of resuming them.
        on_variant: called with each finished row (dense first, then the dense control).

    Returns:
        The results document.

    Raises:
        ArtifactExistsError: ``out_dir`` holds results made with other settings and
            ``fresh`` is not set (nothing has been run or written).
        FormatError: ``out_dir``'s results.json is unreadable.
    """
    budget = text_budget(settings.quick)
    store = ResultStore(settings.out_dir, settings.fingerprint())
    reused = store.resume(fresh=fresh)
    store.data["task"] = task_record(task, budget)
    store.data["environment"] = environment(settings)
    store.data["requested"] = [v.name for v in settings.variants]
    store.data["interrupted"] = False
    try:
        with fixed_threads(settings.threads):
            _run_all(settings, task, budget, store, reused, on_variant)
    except KeyboardInterrupt:
        store.data["interrupted"] = True
        store.save()
        raise
    return store.data


def _baseline(task: TextTask) -> dict[str, Any]:
    return {"source": task.source, "model": task.model_name, "dataset": task.data.name,
            "command": COMMAND, "data": task.data.info}


def _run_all(settings: CompareSettings, task: TextTask, budget: TextBudget, store: ResultStore,
             reused: list[str], on_variant: Callable[[dict[str, Any]], None] | None) -> None:
    dense = task.build().eval()
    run = prepare(settings, task, budget, dense)
    store.data["baseline"] = {"source": task.source, "path": None}

    def report(row: dict[str, Any]) -> None:
        if on_variant is not None:
            on_variant(row)

    if store.data["dense"] is None:
        store.put_dense(dense_row(dense, run, _baseline(task)))
    report(store.data["dense"])
    if (store.data.get("control") or {}).get("status") != "done":
        try:
            control = control_row(dense, run, CONTROL_NAME, CONTROL_FAMILY)
        except FAILURES as exc:
            control = failed_row(CONTROL_NAME, CONTROL_FAMILY, 0.0, exc)
        store.put_control(control)
    report(store.data["control"])
    bar = tqdm(settings.variants, desc="variants", disable=not settings.progress, leave=False)
    for variant in bar:
        bar.set_postfix(variant=variant.name)
        if variant.name in reused:
            log.info("reusing finished results of %s", variant.name)
        else:
            try:
                row = variant_row(variant, copy.deepcopy(dense), run)
            except FAILURES as exc:
                row = failed_row(variant.name, variant.family, variant.sparsity, exc)
            store.put_variant(variant.name, row)
        report(store.data["variants"][variant.name])
