"""The dense control: the baseline given exactly a variant's recovery budget, nothing pruned.

Every variant is fine-tuned once more than the baseline was trained, so part of a variant's
gap to the baseline is that extra training, not pruning. The control isolates it: the same
recipe, data order and seed on the unpruned model. A variant's accuracy loss against the
control is what pruning itself cost.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from torch import nn

from ..data.bundle import DataBundle
from ..measure.accuracy import evaluate_accuracy
from .measuring import MeasureContext, measure_model
from .pipeline import deployable, layer_table, save_bytes
from .recovery import finetune_record, recover
from .settings import CompareSettings

CONTROL_NAME = "dense+recovery"
CONTROL_FAMILY = "control"


def run_control(dense: nn.Module, data: DataBundle, ctx: MeasureContext,
                settings: CompareSettings) -> dict[str, Any]:
    """Fine-tune a copy of the dense model with the variants' budget; evaluate, save, measure.

    Args:
        dense: the dense baseline (not modified).
        data: training and test batches.
        ctx: the run's measurement context.
        settings: the run's settings (the recovery recipe).

    Returns:
        A results row like a variant's, named :data:`CONTROL_NAME`.

    Raises:
        PlanError: fine-tuning changed the model's structure.
    """
    start = time.perf_counter()
    model, teacher = copy.deepcopy(dense), copy.deepcopy(dense)
    report = recover(model, data, settings, teacher=teacher,
                     description=f"fine-tune {CONTROL_NAME}")
    row: dict[str, Any] = {"name": CONTROL_NAME, "family": CONTROL_FAMILY, "sparsity": 0.0,
                           "specs": []}
    row["finetune"] = finetune_record(report, settings, {"kind": "dense"})
    row["accuracy"] = evaluate_accuracy(model, data.test, progress=settings.progress,
                                        description=f"evaluate {CONTROL_NAME}")
    row["disk"] = save_bytes(model, settings.out_dir / "models" / CONTROL_NAME,
                             settings.model_ref)
    deploy = deployable(model)
    row.update(measure_model(deploy, ctx))
    row["layers"] = layer_table(deploy, ctx.dense)
    row["seconds"] = round(time.perf_counter() - start, 1)
    row["status"] = "done"
    return row
