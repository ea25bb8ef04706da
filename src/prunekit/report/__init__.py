"""Reports of a comparison: terminal table, report.md, results.json/csv, PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..compare.store import write_json_atomic
from ..io.atomic import atomic_text
from .markdown import render_markdown
from .rows import COLUMNS, columns, failed_rows, flat_rows, missing_variants, to_csv
from .task import TaskView, task_view
from .terminal import render_terminal


def write_reports(data: dict[str, Any], out_dir: Path, *, plots: bool = True) -> list[Path]:
    """Write results.json, results.csv, report.md and (optionally) the PNG plots.

    Args:
        data: the results document from :func:`prunekit.compare.run_comparison`.
        out_dir: folder to write into (created if needed).
        plots: also draw the PNG plots (needs matplotlib).

    Returns:
        The written paths.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "results.json", data)
    atomic_text(out_dir / "results.csv", to_csv(flat_rows(data), task_view(data)),
                overwrite=True)
    atomic_text(out_dir / "report.md", render_markdown(data, plots=plots), overwrite=True)
    paths = [out_dir / name for name in ("results.json", "results.csv", "report.md")]
    if plots:
        from .plots import write_plots

        paths += write_plots(data, out_dir)
    return paths


__all__ = [
    "COLUMNS",
    "TaskView",
    "columns",
    "failed_rows",
    "flat_rows",
    "missing_variants",
    "render_markdown",
    "render_terminal",
    "task_view",
    "to_csv",
    "write_reports",
]
