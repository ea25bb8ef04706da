"""The rich terminal table: short columns that fit an 80-column terminal."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .rows import failed_rows, flat_rows, missing_variants
from .sparse import dense_timing_reasons
from .tables import short_cells, short_header
from .task import IMAGE, TaskView, task_view

LEGEND = (
    "acc %: top-1 after fine-tuning; Δ base / Δ ctrl: points against the dense baseline / "
    "the dense+recovery control (the baseline given the same fine-tuning); nonzero: dense "
    "nonzero params ÷ the variant's; disk: bytes on disk vs dense; b1 / b64: CPU speedup at "
    "batch 1 / 64 (variants with zeros inside their layers: after pk.to_sparse). MACs, "
    "memory, milliseconds and the layers run sparse: report.md."
)
TEXT_LEGEND = (
    "cos: mean cosine to the dense model's sentence embeddings of held-out sentences, after "
    "distillation (dense: 1); Δ ctrl: its change against the dense+recovery control (the "
    "dense model given the same distillation); {extras}: Spearman correlation "
    "with human similarity ratings; nnz: dense nonzero params ÷ the variant's; disk: "
    "bytes on disk vs dense; {batches}: CPU speedup at those batch sizes (variants with "
    "zeros inside their layers: after pk.to_sparse). MACs, memory, milliseconds and the "
    "layers run sparse: report.md."
)


def legend(view: TaskView = IMAGE) -> str:
    """The terminal table's legend for ``view``'s task."""
    if view == IMAGE:
        return LEGEND
    return TEXT_LEGEND.format(extras=" / ".join(k for k, _ in view.extras),
                              batches=" / ".join(view.batch_keys))


def comparison_table(data: dict[str, Any]) -> Table:
    """The measured comparison as a rich table (cells fold, never cut with an ellipsis)."""
    view = task_view(data)
    dense = data.get("dense") or {}
    baseline = dense.get("baseline", {})
    subject = str(baseline.get("dataset", "dataset"))
    if view != IMAGE:
        subject = f"{baseline.get('model', view.name)} on {subject}"
    title = f"prunekit compare: {subject}"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, col in enumerate(short_header(view)):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i > 0,
                         overflow="fold")  # only a very long variant name folds
    for row in flat_rows(data):
        table.add_row(*short_cells(row, view))
    return table


def render_terminal(data: dict[str, Any], console: Console) -> None:
    """Print the measured comparison, a legend, and any failed or missing variants."""
    console.print(comparison_table(data))
    console.print(legend(task_view(data)), highlight=False, style="dim")
    for reason, names in dense_timing_reasons(data).items():
        console.print(f"[yellow]timed with dense kernels:[/yellow] {escape(', '.join(names))}: "
                      f"{escape(reason)}", highlight=False)
    for name, error in failed_rows(data).items():
        console.print(f"[red]{escape(name)} failed:[/red] {escape(error)}", highlight=False)
    missing = missing_variants(data)
    if data.get("interrupted") or missing:
        console.print(f"[yellow]missing variants:[/yellow] {', '.join(missing) or 'none'}")
