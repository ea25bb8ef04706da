"""The measured side-by-side table: full cells for report.md, short ones for the terminal."""

from __future__ import annotations

from typing import Any

from .fmt import count, mega, mib, millis, pct, signed_pt, times
from .task import IMAGE, TaskView

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


def header(view: TaskView = IMAGE) -> tuple[str, ...]:
    """report.md's table header for ``view``'s task (the image task's is :data:`HEADER`)."""
    if view == IMAGE:
        return HEADER
    label, unit = view.label, view.unit
    return (
        "variant", f"{label} before {view.recovery}", f"{label} after {view.recovery}",
        f"vs baseline {unit}", f"vs control {unit}", *[name for _, name in view.extras],
        "nonzero params", "MACs", "bytes on disk", f"peak mem MiB ({view.largest})",
        *[f"CPU {b} ms (speedup)" for b in view.batch_keys],
    )


def short_header(view: TaskView = IMAGE) -> tuple[str, ...]:
    """The terminal table's header (the image task's is :data:`SHORT_HEADER`)."""
    if view == IMAGE:
        return SHORT_HEADER
    # the main figure is relative to dense already (dense: 1), so no "Δ base" column
    return ("variant", view.short, "Δ ctrl", *[key for key, _ in view.extras], "nnz",
            "disk", *view.batch_keys)


def _latency(ms: float | None, iqr: float | None, speedup: float | None) -> str:
    if ms is None:
        return "n/a"
    return f"{millis(ms)} ±{millis(iqr)} ({times(speedup)})"


def _failed(row: dict[str, Any], width: int) -> list[str]:
    return [row["variant"], "failed", *[""] * (width - 2)]


def _extra(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ratio5(value: float | None) -> str:
    """A ratio in at most 5 characters: ``0.98x``, ``12.3x``, ``125x``."""
    if value is None or value < 9.995:
        return times(value)
    return times(value, 1) if value < 99.95 else times(value, 0)


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def short_cells(row: dict[str, Any], view: TaskView = IMAGE) -> list[str]:
    """One terminal row (:func:`short_header`): ratios to dense instead of absolute figures.

    Args:
        row: a flat row (:func:`prunekit.report.rows.flat_row`).
        view: the task (default: the image task).

    Returns:
        The cells; a failed variant says so instead of numbers.
    """
    if row["status"] != "done":
        return _failed(row, len(short_header(view)))
    dense = row["family"] == "dense"
    if view != IMAGE:
        return [
            row["variant"], _extra(row["acc_after"]),
            "" if row["family"] in REFERENCES else _signed(row["delta_control_pt"]),
            *[_extra(row.get(key), 2) for key, _ in view.extras],
            times(row["compression"], 1), times(row["bytes_ratio"]),
            *[_ratio5(row[f"{b}_speedup"]) for b in view.batch_keys],
        ]
    return [
        row["variant"], pct(row["acc_after"]),
        "" if dense else signed_pt(row["delta_pt"]),
        "" if row["family"] in REFERENCES else signed_pt(row["delta_control_pt"]),
        times(row["compression"], 1), times(row["bytes_ratio"], 3),
        times(row["b1_speedup"]), times(row["b64_speedup"]),
    ]


def table_cells(row: dict[str, Any], view: TaskView = IMAGE) -> list[str]:
    """One report.md row (:func:`header`); failed variants say so instead of numbers.

    Args:
        row: a flat row (:func:`prunekit.report.rows.flat_row`).
        view: the task (default: the image task).

    Returns:
        The cells.
    """
    if row["status"] != "done":
        return _failed(row, len(header(view)))
    dense = row["family"] == "dense"
    reference = row["family"] in REFERENCES
    return [
        row["variant"],
        "" if reference else view.value_text(row["acc_before"]),
        view.value_text(row["acc_after"]),
        "" if dense else view.delta_text(row["delta_pt"]),
        "" if reference else view.delta_text(row["delta_control_pt"]),
        *[_extra(row.get(key)) for key, _ in view.extras],
        f"{count(row['nonzero_params'])} ({times(row['compression'], 1)})",
        f"{mega(row['macs'])} (/{row['macs_reduction']:.1f})" if row["macs_reduction"] else "n/a",
        f"{count(row['bytes_on_disk'])} ({times(row['bytes_ratio'])})"
        if row["bytes_on_disk"] is not None else "n/a",
        mib(row["peak_memory_bytes"]),
        *[_latency(row[f"{b}_ms"], row[f"{b}_iqr_ms"], row[f"{b}_speedup"])
          for b in view.batch_keys],
    ]


def markdown_table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(lines)
