"""The rich terminal table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .rows import flat_rows, missing_variants
from .tables import SHORT_HEADER, table_cells


def render_terminal(data: dict[str, Any], console: Console) -> None:
    """Print the measured comparison and any missing variants."""
    rows = flat_rows(data)
    dense = data.get("dense") or {}
    title = f"prunekit compare: {dense.get('baseline', {}).get('dataset', 'dataset')}"
    table = Table(title=title, show_lines=False)
    for i, col in enumerate(SHORT_HEADER):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*table_cells(row, compact=True))
    console.print(table)
    for name, variant in data.get("variants", {}).items():
        if variant.get("status") == "failed":
            console.print(f"[red]{name} failed:[/red] {variant.get('error')}", highlight=False)
    missing = missing_variants(data)
    if data.get("interrupted") or missing:
        console.print(f"[yellow]missing variants:[/yellow] {', '.join(missing) or 'none'}")
