"""What ``pk.to_sparse`` did to each model timed through it: layers sparse per batch size.

A results row of a model with zeros inside its layers carries ``sparse``: for each batch
size (``"b1"``, ``"b64"``) a record of the conversion (see
:func:`prunekit.compare.pipeline.sparse_deployable`). These functions turn those records
into the report's words; rows without them (dense, the control, structured variants) were
timed as they are.
"""

from __future__ import annotations

from typing import Any

from .fmt import times
from .tables import markdown_table

BATCHES = ("b1", "b64")  # the image task's; a record names its own batch sizes
METHOD = (
    "Models with zeros inside their layers (unstructured, N:M and combined variants) are timed "
    "on the CPU after `pk.to_sparse` converted their deployable model at that batch size: it "
    "times every Linear and Conv2d layer dense and sparse at the input shape the batch gives "
    "it, and swaps in the sparse layer (CSRLinear / CSRConv2d) only where that wins by at "
    "least 10%. A model with a sparse convolution runs in the contiguous (NCHW) memory format, "
    "the one CSRConv2d takes. The speedup is against the dense model timed interleaved with "
    "it. Accuracy, counts, memory, bytes on disk and CUDA latency are those of the deployable "
    "model; the converted one computes the same outputs (the largest difference is in "
    "results.json)."
)


def records(row: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A results row's conversion records, batch -> record (empty: timed as it is)."""
    found = (row or {}).get("sparse")
    return {b: r for b, r in found.items() if isinstance(r, dict)} if isinstance(found, dict) \
        else {}


def sparse_layers(record: dict[str, Any] | None) -> int | None:
    """Layers a conversion swapped for sparse ones (None: no conversion was made)."""
    if not record or not record.get("converted"):
        return None
    return sum(int(record.get(kind, {}).get("sparse", 0)) for kind in ("convs", "linears"))


def layer_counts(record: dict[str, Any]) -> str:
    """``"7/9 convs + 1/1 linears"`` (a kind the model does not have is left out)."""
    parts = [f"{counts['sparse']}/{counts['total']} {kind}"
             for kind in ("convs", "linears")
             if (counts := record.get(kind)) and counts.get("total")]
    return " + ".join(parts) or "no Conv2d or Linear layer"


def batch_summary(record: dict[str, Any], speedup: float | None = None) -> str:
    """One batch size: ``"7/9 convs sparse (csr), 1.60x"``, or why it was timed dense.

    Args:
        record: the conversion record of that batch size.
        speedup: the measured speedup over dense at that batch size (None: left out).

    Returns:
        The text.
    """
    figure = "" if speedup is None else f", {times(speedup)}"
    if not record.get("converted"):
        return f"dense timing: {record.get('reason') or 'not converted'}{figure}"
    kernels = ", ".join(sorted(record.get("kernels") or {}))
    text = f"{layer_counts(record)} sparse ({kernels or record.get('reason') or 'none'})"
    return text + figure


def speed_note(row: dict[str, Any] | None) -> str:
    """How a model was timed, for the speed verdict: ``"after pk.to_sparse: 2/2 convs
    sparse at b64, 1/2 at b1"``; empty for a model timed as it is."""
    found = records(row)
    if not found:
        return ""
    if not any(r.get("converted") for r in found.values()):
        reasons = sorted({str(r.get("reason")) for r in found.values()})
        return f"dense timing: {'; '.join(reasons)}"
    parts = [f"{layer_counts(r)} sparse at {b}" if r.get("converted")
             else f"dense timing at {b} ({r.get('reason')})" for b, r in found.items()]
    return "after pk.to_sparse: " + ", ".join(parts)


def dense_timing_reasons(data: dict[str, Any]) -> dict[str, list[str]]:
    """Models that should have been timed through ``pk.to_sparse`` but were timed dense
    (kernels unavailable, conversion failed, outputs differ): reason -> model names."""
    rows = [data.get("control"), *data.get("variants", {}).values()]
    reasons: dict[str, list[str]] = {}
    for row in rows:
        for record in records(row).values():
            if not record.get("converted"):
                names = reasons.setdefault(str(record.get("reason")), [])
                if row is not None and row["name"] not in names:
                    names.append(row["name"])
    return reasons


def batch_keys(found: list[dict[str, dict[str, Any]]]) -> list[str]:
    """The batch keys (``b1``, ``b32``, ...) of some conversion records, smallest first."""
    keys = {b for records_ in found for b in records_}
    return sorted(keys, key=lambda b: int(b[1:]) if b[1:].isdigit() else 0)


def _summary_table(rows: list[dict[str, Any]], details: dict[str, dict[str, Any]]) -> str:
    batches = batch_keys([records(details.get(r["variant"])) for r in rows]) or list(BATCHES)
    body = []
    for row in rows:
        found = records(details.get(row["variant"]))
        if found:
            body.append([row["variant"], *[
                batch_summary(found[b], row.get(f"{b}_speedup")) if b in found else "n/a"
                for b in batches]])
    return markdown_table(["variant", *[f"CPU {b}" for b in batches]], body)


def _layer_cell(layer: dict[str, Any] | None) -> str:
    if layer is None:
        return "n/a"
    return f"{layer['kernel']} ({layer['reason']})" if layer.get("reason") else layer["kernel"]


def layer_table(row: dict[str, Any]) -> str:
    """Per layer of one model: its kind, shape, sparsity and, per batch size, the kernel
    ``pk.to_sparse`` chose and why (empty if no batch size was converted)."""
    batches = batch_keys([records(row)])
    by_batch = {b: {layer["name"]: layer for layer in r.get("layers", [])}
                for b, r in records(row).items() if r.get("converted")}
    names = list(dict.fromkeys(n for layers in by_batch.values() for n in layers))
    if not names:
        return ""
    body = []
    for name in names:
        first = next(layers[name] for layers in by_batch.values() if name in layers)
        body.append([name or "(the model)", first["kind"], "x".join(map(str, first["shape"])),
                     f"{first['sparsity']:.1%}",
                     *[_layer_cell(by_batch.get(b, {}).get(name)) for b in batches]])
    return markdown_table(["layer", "kind", "shape", "sparsity", *batches], body)


def sparse_section(rows: list[dict[str, Any]], details: dict[str, dict[str, Any]]) -> list[str]:
    """report.md's section on sparse kernels: the method, a line per converted model and
    batch size, and each model's per-layer choices (nothing if no model was converted).

    Args:
        rows: flat rows (:func:`prunekit.report.rows.flat_rows`).
        details: model name -> its results row (the variants and the control).

    Returns:
        Markdown lines.
    """
    if not any(records(details.get(r["variant"])) for r in rows):
        return []
    parts = ["## Sparse kernels (`pk.to_sparse`)", "", METHOD, "",
             _summary_table(rows, details), ""]
    for row in rows:
        table = layer_table(details.get(row["variant"]) or {})
        if table:
            parts += [f"### {row['variant']}: kernel per layer", "", table, ""]
    return parts
