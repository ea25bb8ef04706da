"""The measured side-by-side table: full cells for report.md, short ones for the terminal."""

from __future__ import annotations

from typing import Any

from .fmt import count, mega, mib, millis, pct, signed_pt, times

HEADER = (
    "variant", "acc before FT %", "acc after FT %", "vs baseline pt", "vs control pt",
    "nonzero params", "MACs", "bytes on disk", "peak mem MiB (b64)", "CPU b1 ms (speedup)",
    "CPU b64 ms (speedup)",
)

# The terminal's table fits 80 columns: accuracy, its change against the dense baseline and
# the dense control, and ratios to dense (nonzero parameters, bytes on disk, speed); the full
# figures (MACs, memory, milliseconds) are in report.md, results.json and results.csv.
SHORT_HEADER = ("variant", "acc %", "Δ base", "Δ ctrl", "nonzero", "disk", "b1", "b64")
REFERENCES = ("dense", "control")  # families whose rows are references, not pruned


def _latency(ms: float | None, iqr: float | None, speedup: float | None) -> str:
    if ms is None:
        return "n/a"
    return f"{millis(ms)} ±{millis(iqr)} ({times(speedup)})"


def _failed(row: dict[str, Any], width: int) -> list[str]:
    return [row["variant"], "failed", *[""] * (width - 2)]


def short_cells(row: dict[str, Any]) -> list[str]:
    """One terminal row (:data:`SHORT_HEADER`): ratios to dense instead of absolute figures.

    Args:
        row: a flat row (:func:`prunekit.report.rows.flat_row`).

    Returns:
        The cells; a failed variant says so instead of numbers.
    """
    if row["status"] != "done":
        return _failed(row, len(SHORT_HEADER))
    dense = row["family"] == "dense"
    return [
        row["variant"], pct(row["acc_after"]),
        "" if dense else signed_pt(row["delta_pt"]),
        "" if row["family"] in REFERENCES else signed_pt(row["delta_control_pt"]),
        times(row["compression"], 1), times(row["bytes_ratio"], 3),
        times(row["b1_speedup"]), times(row["b64_speedup"]),
    ]


def table_cells(row: dict[str, Any]) -> list[str]:
    """One report.md row (:data:`HEADER`); failed variants say so instead of numbers.

    Args:
        row: a flat row (:func:`prunekit.report.rows.flat_row`).

    Returns:
        The cells.
    """
    if row["status"] != "done":
        return _failed(row, len(HEADER))
    dense = row["family"] == "dense"
    reference = row["family"] in REFERENCES
    return [
        row["variant"],
        "" if reference else pct(row["acc_before"]),
        pct(row["acc_after"]),
        "" if dense else signed_pt(row["delta_pt"]),
        "" if reference else signed_pt(row["delta_control_pt"]),
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
