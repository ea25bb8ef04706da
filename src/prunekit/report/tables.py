"""The measured side-by-side table (shared by the terminal and report.md)."""

from __future__ import annotations

from typing import Any

from .fmt import count, mega, mib, millis, pct, signed_pt, times

HEADER = (
    "variant", "acc before FT %", "acc after FT %", "vs dense pt", "nonzero params",
    "MACs", "bytes on disk", "peak mem MiB (b64)", "CPU b1 ms (speedup)",
    "CPU b64 ms (speedup)",
)


SHORT_HEADER = (
    "variant", "acc pre %", "acc FT %", "Δ pt", "nonzero (x)", "MACs", "disk (x)",
    "mem MiB", "b1 ms (x)", "b64 ms (x)",
)


def _latency(ms: float | None, iqr: float | None, speedup: float | None,
             compact: bool = False) -> str:
    if ms is None:
        return "n/a"
    if compact:
        return f"{ms:.1f} ({times(speedup)})"
    return f"{millis(ms)} ±{millis(iqr)} ({times(speedup)})"


def table_cells(row: dict[str, Any], compact: bool = False) -> list[str]:
    """One table row as strings; failed variants say so instead of numbers.

    Args:
        row: a flat row (:func:`prunekit.report.rows.flat_row`).
        compact: shorter cells for the terminal (no IQR, ratios only for sizes).
    """
    if row["status"] != "done":
        return [row["variant"], "failed", *[""] * (len(HEADER) - 2)]
    dense = row["family"] == "dense"
    if compact:
        return [
            row["variant"], "" if dense else pct(row["acc_before"]), pct(row["acc_after"]),
            "" if dense else signed_pt(row["delta_pt"]), times(row["compression"], 1),
            f"/{row['macs_reduction']:.1f}" if row["macs_reduction"] else "n/a",
            times(row["bytes_ratio"]), mib(row["peak_memory_bytes"]),
            _latency(row["b1_ms"], None, row["b1_speedup"], True),
            _latency(row["b64_ms"], None, row["b64_speedup"], True),
        ]
    return [
        row["variant"],
        "" if dense else pct(row["acc_before"]),
        pct(row["acc_after"]),
        "" if dense else signed_pt(row["delta_pt"]),
        f"{count(row['nonzero_params'])} ({times(row['compression'], 1)})",
        f"{mega(row['macs'])} (/{row['macs_reduction']:.1f})" if row["macs_reduction"] else "n/a",
        f"{count(row['bytes_on_disk'])} ({times(row['bytes_ratio'])})"
        if row["bytes_on_disk"] is not None else "n/a",
        mib(row["peak_memory_bytes"]),
        _latency(row["b1_ms"], row["b1_iqr_ms"], row["b1_speedup"]),
        _latency(row["b64_ms"], row["b64_iqr_ms"], row["b64_speedup"]),
    ]


def markdown_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(lines)
