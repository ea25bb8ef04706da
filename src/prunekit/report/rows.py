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

COLUMNS = (
    "variant", "family", "status", "acc_before", "acc_after", "delta_pt", "delta_control_pt",
    "params", "nonzero_params", "compression", "macs", "macs_reduction", "bytes_on_disk",
    "bytes_ratio", "peak_memory_bytes", "b1_ms", "b1_iqr_ms", "b1_speedup", "b64_ms",
    "b64_iqr_ms", "b64_speedup", "b1_sparse_layers", "b64_sparse_layers", "finetune_seconds",
)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _get(row: dict[str, Any], *path: str) -> Any:
    value: Any = row
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _points(acc: float | None, reference: dict[str, Any] | None) -> float | None:
    """``acc`` minus the reference's accuracy, in percentage points (None if either is missing
    or the reference did not finish)."""
    if reference is None or reference.get("status", "done") != "done":
        return None
    ref = reference.get("accuracy")
    return (acc - ref) * 100 if acc is not None and ref is not None else None


def flat_row(row: dict[str, Any], dense: dict[str, Any],
             control: dict[str, Any] | None = None) -> dict[str, Any]:
    """One flat record: accuracies, counts and ratios to dense, latency and speedups.

    Args:
        row: a results row (dense, the control or a variant).
        dense: the dense baseline's row.
        control: the dense control's row (None: ``delta_control_pt`` is None).

    Returns:
        The record, keyed by :data:`COLUMNS`.
    """
    acc = row.get("accuracy")
    return {
        "variant": row["name"],
        "family": row.get("family"),
        "status": row.get("status"),
        "acc_before": row.get("accuracy_before"),
        "acc_after": acc,
        "delta_pt": _points(acc, dense),
        "delta_control_pt": None if row is control else _points(acc, control),
        "params": row.get("params"),
        "nonzero_params": row.get("nonzero_params"),
        "compression": _ratio(dense.get("nonzero_params"), row.get("nonzero_params")),
        "macs": row.get("macs"),
        "macs_reduction": _ratio(dense.get("macs"), row.get("macs")),
        "bytes_on_disk": _get(row, "disk", "bytes"),
        "bytes_ratio": _ratio(_get(row, "disk", "bytes"), _get(dense, "disk", "bytes")),
        "peak_memory_bytes": _get(row, "memory", "peak_bytes"),
        "b1_ms": _get(row, "latency_cpu", "b1", "median_ms"),
        "b1_iqr_ms": _get(row, "latency_cpu", "b1", "iqr_ms"),
        "b1_speedup": _get(row, "latency_cpu", "b1", "speedup"),
        "b64_ms": _get(row, "latency_cpu", "b64", "median_ms"),
        "b64_iqr_ms": _get(row, "latency_cpu", "b64", "iqr_ms"),
        "b64_speedup": _get(row, "latency_cpu", "b64", "speedup"),
        "b1_sparse_layers": sparse_layers(_get(row, "sparse", "b1")),
        "b64_sparse_layers": sparse_layers(_get(row, "sparse", "b64")),
        "finetune_seconds": _get(row, "finetune", "seconds"),
    }


def _paired_dense_latency(dense_row: dict[str, Any], variants: dict[str, Any]) -> None:
    """Show the dense model's latency as timed beside the variants, not in its own session.

    The dense session runs once; a burst of load on a shared machine can inflate it many
    times over. Each variant session times the dense model interleaved with the variant, so
    the median over those pairs is the figure the speedups are relative to.
    """
    for batch in ("b1", "b64"):
        pairs = [_get(v, "latency_cpu", batch) for v in variants.values()]
        pairs = [p for p in pairs if isinstance(p, dict) and p.get("dense_median_ms")]
        if pairs:
            dense_row[f"{batch}_ms"] = statistics.median(p["dense_median_ms"] for p in pairs)
            dense_row[f"{batch}_iqr_ms"] = statistics.median(p["dense_iqr_ms"] for p in pairs)


def flat_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Dense first, then the dense control, then every recorded variant in the order they
    were requested."""
    dense = data.get("dense") or {}
    control = data.get("control")
    variants = data.get("variants", {})
    rows = [flat_row(dense, dense, control)] if dense else []
    if rows:
        rows[0]["delta_control_pt"] = None  # a reference: no change against the other one
        timed = {**variants, **({"control": control} if control else {})}
        _paired_dense_latency(rows[0], timed)
    if control:
        rows.append(flat_row(control, dense, control))
    order = [n for n in data.get("requested", []) if n in variants]
    order += [n for n in variants if n not in order]
    rows += [flat_row(variants[n], dense, control) for n in order]
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


def to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text with :data:`COLUMNS` as header; missing figures are empty cells."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    return buffer.getvalue()
