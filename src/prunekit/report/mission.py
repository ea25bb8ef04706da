"""MISSION.md's unstructured-vs-structured table, each cell backed by a measured figure."""

from __future__ import annotations

from typing import Any

from .fmt import signed_pt, times
from .tables import markdown_table

_PROSE = {
    "granularity": ("single weights", "filters / channels", "channels, then weights"),
    "sparsity pattern": ("irregular", "regular (smaller dense tensors)", "both"),
    "hardware friendliness": ("poor: needs sparse kernels", "good: dense kernels get faster",
                              "speed of the structured part"),
    "accuracy loss": ("small, after fine-tuning", "larger, needs fine-tuning", "adds up"),
    "flexibility": ("high: weight by weight", "low: coarse units", "medium"),
    "typical use": ("accuracy-critical, small on disk", "fast inference (mobile, real time)",
                    "smallest model at a given accuracy"),
}
FAMILIES = ("unstructured", "structured", "combined")


def representative(rows: list[dict[str, Any]], family: str) -> dict[str, Any] | None:
    """The finished variant of ``family`` with the most compression (nonzero params)."""
    done = [r for r in rows if r["family"] == family and r["status"] == "done"]
    return max(done, key=lambda r: r["compression"] or 0.0, default=None)


def _evidence(dimension: str, row: dict[str, Any], layers: list[dict[str, Any]]) -> str:
    if dimension == "granularity":
        removed = sum(1 for layer in layers if layer["dense_width"]
                      and layer["width"] < layer["dense_width"])
        return f"{removed}/{len(layers)} layers narrower"
    if dimension == "sparsity pattern":
        return (f"{times(row['compression'], 1)} fewer nonzeros, "
                f"MACs /{row['macs_reduction']:.1f}" if row["macs_reduction"] else "n/a")
    if dimension == "hardware friendliness":
        return f"CPU speedup b1 {times(row['b1_speedup'])} / b64 {times(row['b64_speedup'])}"
    if dimension == "accuracy loss":
        return f"{signed_pt(row['delta_pt'])} pt after fine-tuning"
    if dimension == "flexibility":
        sparsities = [layer["sparsity"] for layer in layers]
        widths = [layer["width"] / layer["dense_width"] for layer in layers if layer["dense_width"]]
        return (f"layer sparsity {min(sparsities):.0%}-{max(sparsities):.0%}, "
                f"width kept {min(widths):.0%}-{max(widths):.0%}")
    return f"bytes on disk {times(row['bytes_ratio'])} of dense"


def mission_table(rows: list[dict[str, Any]], variants: dict[str, Any]) -> str:
    """Markdown table: one column per family, prose + the representative variant's figure."""
    reps = {f: representative(rows, f) for f in FAMILIES}
    header = ["dimension"]
    for family, rep in reps.items():
        header.append(f"{family} ({rep['variant']})" if rep else f"{family} (not measured)")
    body = []
    for dimension, prose in _PROSE.items():
        cells = [dimension]
        for family, text in zip(FAMILIES, prose, strict=True):
            rep = reps[family]
            if rep is None:
                cells.append(f"{text}; no measured variant")
                continue
            layers = variants.get(rep["variant"], {}).get("layers", [])
            cells.append(f"{text}; measured: {_evidence(dimension, rep, layers)}")
        body.append(cells)
    return markdown_table(header, body)
