"""Flatten a results document into one row of numbers per model (dense, control, variants).

``b1_sparse_layers`` / ``b64_sparse_layers``: the layers ``pk.to_sparse`` ran sparse in the
model timed at that batch size (empty where the model was timed as it is).

Accuracy changes are given against two references: the dense baseline (``delta_pt``) and the
dense control, the baseline fine-tuned with the variants' budget (``delta_control_pt``): the
second is what pruning itself cost, without the extra training every variant got.
"""

from __future__ import annotations

import csv
import io
import statistics
from typing import Any

from .sparse import sparse_layers
from .task import IMAGE, TaskView, task_view

COLUMNS = (
    "variant", "family", "status", "acc_before", "acc_after", "delta_pt", "delta_control_pt",
    "params", "nonzero_params", "compression", "macs", "macs_reduction", "bytes_on_disk",
    "bytes_ratio", "peak_memory_bytes", "b1_ms", "b1_iqr_ms", "b1_speedup", "b64_ms",
    "b64_iqr_ms", "b64_speedup", "b1_sparse_layers", "b64_sparse_layers", "finetune_seconds",
)  # the image task's; :func:`columns` gives any task's


def columns(view: TaskView = IMAGE) -> tuple[str, ...]:
    """The flat-row keys of ``view``'s task, in results.csv order."""
    keys = ["variant", "family", "status", "acc_before", "acc_after", "delta_pt",
            "delta_control_pt", *[key for key, _ in view.extras], "params", "nonzero_params",
            "compression", "macs", "macs_reduction", "bytes_on_disk", "bytes_ratio",
            "peak_memory_bytes"]
    for b in view.batch_keys:
        keys += [f"{b}_ms", f"{b}_iqr_ms", f"{b}_speedup"]
    keys += [f"{b}_sparse_layers" for b in view.batch_keys]
    return (*keys, "finetune_seconds")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _get(row: dict[str, Any], *path: str) -> Any:
    value: Any = row
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _points(acc: float | None, reference: dict[str, Any] | None,
            view: TaskView = IMAGE) -> float | None:
    """``acc`` minus the reference's figure in the task's unit (percentage points for
    accuracy; None if either is missing or the reference did not finish)."""
    if reference is None or reference.get("status", "done") != "done":
        return None
    return view.delta(acc, reference.get(view.primary))


def flat_row(row: dict[str, Any], dense: dict[str, Any],
             control: dict[str, Any] | None = None, view: TaskView = IMAGE) -> dict[str, Any]:
    """One flat record: quality, counts and ratios to dense, latency and speedups.

    ``acc_before`` / ``acc_after`` hold the task's main quality figure (top-1 accuracy, or
    the sentence encoder's cosine to the dense embeddings), ``delta_pt`` /
    ``delta_control_pt`` its change in the task's unit (:class:`TaskView`).

    Args:
        row: a results row (dense, the control or a variant).
        dense: the dense baseline's row.
        control: the dense control's row (None: ``delta_control_pt`` is None).
        view: the task (default: the image task).

    Returns:
        The record, keyed by :func:`columns`.
    """
    acc = row.get(view.primary)
    flat = {
        "variant": row["name"],
        "family": row.get("family"),
        "status": row.get("status"),
        "acc_before": row.get(f"{view.primary}_before"),
        "acc_after": acc,
        "delta_pt": _points(acc, dense, view),
        "delta_control_pt": None if row is control else _points(acc, control, view),
        **{key: row.get(key) for key, _ in view.extras},
        "params": row.get("params"),
        "nonzero_params": row.get("nonzero_params"),
        "compression": _ratio(dense.get("nonzero_params"), row.get("nonzero_params")),
        "macs": row.get("macs"),
        "macs_reduction": _ratio(dense.get("macs"), row.get("macs")),
        "bytes_on_disk": _get(row, "disk", "bytes"),
        "bytes_ratio": _ratio(_get(row, "disk", "bytes"), _get(dense, "disk", "bytes")),
        "peak_memory_bytes": _get(row, "memory", "peak_bytes"),
        "finetune_seconds": _get(row, "finetune", "seconds"),
    }
    for b in view.batch_keys:
        flat[f"{b}_ms"] = _get(row, "latency_cpu", b, "median_ms")
        flat[f"{b}_iqr_ms"] = _get(row, "latency_cpu", b, "iqr_ms")
        flat[f"{b}_speedup"] = _get(row, "latency_cpu", b, "speedup")
        flat[f"{b}_sparse_layers"] = sparse_layers(_get(row, "sparse", b))
    return flat


def _paired_dense_latency(dense_row: dict[str, Any], variants: dict[str, Any],
                          view: TaskView) -> None:
    """Show the dense model's latency as timed beside the variants, not in its own session.

    The dense session runs once; a burst of load on a shared machine can inflate it many
    times over. Each variant session times the dense model interleaved with the variant, so
    the median over those pairs is the figure the speedups are relative to.
    """
    for batch in view.batch_keys:
        pairs = [_get(v, "latency_cpu", batch) for v in variants.values()]
        pairs = [p for p in pairs if isinstance(p, dict) and p.get("dense_median_ms")]
        if pairs:
            dense_row[f"{batch}_ms"] = statistics.median(p["dense_median_ms"] for p in pairs)
            dense_row[f"{batch}_iqr_ms"] = statistics.median(p["dense_iqr_ms"] for p in pairs)


def flat_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Dense first, then the dense control, then every recorded variant in the order they
    were requested."""
    view = task_view(data)
    dense = data.get("dense") or {}
    control = data.get("control")
    variants = data.get("variants", {})
    rows = [flat_row(dense, dense, control, view)] if dense else []
    if rows:
        rows[0]["delta_control_pt"] = None  # a reference: no change against the other one
        timed = {**variants, **({"control": control} if control else {})}
        _paired_dense_latency(rows[0], timed, view)
    if control:
        rows.append(flat_row(control, dense, control, view))
    order = [n for n in data.get("requested", []) if n in variants]
    order += [n for n in variants if n not in order]
    rows += [flat_row(variants[n], dense, control, view) for n in order]
    return rows


def failed_rows(data: dict[str, Any]) -> dict[str, str]:
    """Every run that failed (the dense control and variants): name -> error message."""
    rows = [data.get("control"), *data.get("variants", {}).values()]
    return {r["name"]: str(r.get("error")) for r in rows
            if isinstance(r, dict) and r.get("status") == "failed"}


def missing_variants(data: dict[str, Any]) -> list[str]:
    """Requested variants with no finished result (interrupted or failed)."""
    variants = data.get("variants", {})
    return [n for n in data.get("requested", [])
            if variants.get(n, {}).get("status") != "done"]


def to_csv(rows: list[dict[str, Any]], view: TaskView = IMAGE) -> str:
    """CSV text, one column per key of :func:`columns` named by :meth:`TaskView.column`
    (the image task's header is :data:`COLUMNS`); missing figures are empty cells."""
    keys = columns(view)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([view.column(k) for k in keys])
    for row in rows:
        writer.writerow(["" if row.get(k) is None else row[k] for k in keys])
    return buffer.getvalue()
