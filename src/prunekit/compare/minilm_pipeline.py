"""One model of the sentence-encoder comparison: prune, distil, evaluate, save, measure.

Every variant and the dense control get the same recovery: :func:`prunekit.recover.
distill_outputs` matching the dense model's sentence embeddings on the same batches, with
the same epochs, learning rate, seed and dropout.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..api import prune
from ..recover import FinetuneReport, distill_outputs
from ..result import PruneResult
from ..specs import TransformerStructured
from .measuring import MeasureContext, measure_model
from .minilm_eval import Evaluator
from .minilm_model import PackedEncoder, TokenBatch, sentence_embedding
from .pipeline import deployable, layer_table, save_bytes
from .settings import CompareSettings
from .variants import Variant, needs_calibration

IGNORED = ["pooler"]  # unused by the sentence embeddings: never pruned


@dataclass
class TextRun:
    """What every model of one sentence-encoder comparison is measured with.

    Attributes:
        settings: the run's settings (distillation epochs, lr, seed, output folder).
        calibration: tokenised calibration batches.
        train: tokenised distillation batches.
        evaluator: the quality metrics.
        ctx: latency inputs and the dense model they are timed against.
        model_ref: the reference :func:`prunekit.save` records.
    """

    settings: CompareSettings
    calibration: list[TokenBatch]
    train: list[TokenBatch]
    evaluator: Evaluator
    ctx: MeasureContext
    model_ref: str

    def models(self, name: str) -> Path:
        """Where the model ``name`` is saved."""
        return self.settings.out_dir / "models" / name


def removed_layers(model: nn.Module, dense: nn.Module) -> list[dict[str, Any]]:
    """Rows like :func:`~prunekit.compare.pipeline.layer_table`'s for the dense model's
    Linear layers that ``model`` no longer has (whole blocks removed): width 0."""
    present = {name for name, _ in model.named_modules()}
    return [{"name": name, "width": 0, "dense_width": int(module.weight.shape[0]),
             "sparsity": 1.0, "removed": True}
            for name, module in dense.named_modules()
            if isinstance(module, nn.Linear) and name not in present]


def prune_text(dense: nn.Module, variant: Variant, calibration: list[TokenBatch],
               seed: int = 0) -> PruneResult:
    """Apply the variant's specs in order to a copy of the encoder ``dense``.

    Args:
        dense: the dense encoder (not modified).
        variant: the recipe (:mod:`prunekit.compare.minilm_variants`).
        calibration: tokenised calibration batches (passed to calibrated specs only).
        seed: pruning seed.

    Returns:
        One :class:`PruneResult` (combined: the structured surgery and the masks in one plan).
    """
    result: PruneResult | None = None
    for spec in variant.specs:  # a result pruned again carries the earlier surgery
        data = calibration if needs_calibration(spec) else None
        ignore = () if isinstance(spec, TransformerStructured) else IGNORED
        result = prune(result or dense, spec, calibration=data, ignore=ignore, seed=seed)
    assert result is not None, "a variant has at least one spec"
    return result


def distill(student: nn.Module, teacher: nn.Module, run: TextRun) -> FinetuneReport:
    """The recovery every model gets: match the dense sentence embeddings on ``run.train``."""
    settings = run.settings
    return distill_outputs(student, teacher, run.train, outputs=sentence_embedding,
                           epochs=settings.epochs, lr=settings.lr, cosine=False, dropout=True,
                           seed=settings.seed, progress=settings.progress)


def recovery_record(report: FinetuneReport, run: TextRun) -> dict[str, Any]:
    """What results.json keeps about one distillation."""
    settings = run.settings
    return {"steps": report.steps, "epochs": report.epochs, "seconds": round(report.seconds, 1),
            "losses": report.losses, "distill": True,
            "schedule": {"kind": "distill_outputs", "lr": settings.lr, "optimizer": "AdamW",
                         "dropout": True, "batches": len(run.train)}}


def measured(row: dict[str, Any], saved: PruneResult | nn.Module, model: nn.Module,
             run: TextRun, name: str, deploy: nn.Module | None = None) -> dict[str, Any]:
    """``row`` with the quality metrics, bytes on disk, counts and latency of ``model``
    (timed as ``deploy`` if given: the dense row passes ``run.ctx.dense``, so that it is
    timed once, as the reference, not against a copy of itself)."""
    row.update(run.evaluator(model))
    row["disk"] = save_bytes(saved, run.models(name), run.model_ref)
    deploy = deployable(PackedEncoder(model)) if deploy is None else deploy
    row.update(measure_model(deploy, run.ctx))
    row["layers"] = layer_table(deploy, run.ctx.dense) + removed_layers(deploy, run.ctx.dense)
    row["status"] = "done"
    return row


def variant_row(variant: Variant, dense: nn.Module, run: TextRun) -> dict[str, Any]:
    """Prune, evaluate, distil, evaluate, save and measure one variant."""
    start = time.perf_counter()
    result = prune_text(dense, variant, run.calibration, seed=run.settings.seed)
    row: dict[str, Any] = {"name": variant.name, "family": variant.family,
                           "sparsity": variant.sparsity,
                           "specs": [s.to_dict() for s in variant.specs]}
    row["cosine_before"] = run.evaluator.cosine(result.model)
    report = distill(result.model, dense, run)
    row["finetune"] = recovery_record(report, run)
    measured(row, result, result.model, run, variant.name)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def control_row(dense: nn.Module, run: TextRun, name: str, family: str) -> dict[str, Any]:
    """The dense encoder given exactly the variants' distillation, nothing pruned."""
    start = time.perf_counter()
    model = copy.deepcopy(dense)
    report = distill(model, dense, run)
    row: dict[str, Any] = {"name": name, "family": family, "sparsity": 0.0, "specs": []}
    row["finetune"] = recovery_record(report, run)
    measured(row, model, model, run, name)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def dense_row(dense: nn.Module, run: TextRun, baseline: dict[str, Any]) -> dict[str, Any]:
    """The dense encoder's row: its metrics (cosine 1 by definition), size and latency."""
    row: dict[str, Any] = {"name": "dense", "family": "dense", "baseline": baseline}
    return measured(row, dense, dense, run, "dense", deploy=run.ctx.dense)
