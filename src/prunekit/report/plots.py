"""PNG plots of a comparison, drawn headless without touching matplotlib's global state.

Each plot is a :class:`matplotlib.figure.Figure` with its own Agg canvas: no pyplot, no
``matplotlib.use``, so importing or calling this leaves the caller's backend and figures
alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io.atomic import atomic_path
from .rows import flat_rows
from .task import IMAGE, TaskView, task_view

MARKERS = {"dense": "*", "control": "P", "unstructured": "o", "nm": "D", "structured": "s",
           "combined": "^"}


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:  # keeps the .png suffix: format by name
        fig.savefig(tmp, dpi=120)
    return path


def _scatter(rows: list[dict[str, Any]], x_key: str, y_keys: list[str], ylabel: str,
             title: str, path: Path, x_label: str, view: TaskView = IMAGE) -> Path:
    fig = _figure((6.4, 4.4))
    ax = fig.subplots()
    for row in rows:
        if row["status"] != "done" or row[x_key] is None:
            continue
        for y_key in y_keys:
            if row[y_key] is None:
                continue
            scale = 100 if y_key.startswith("acc") and view.percent else 1
            y = row[y_key] * scale
            marker = MARKERS.get(row["family"] or "", "o")
            ax.scatter(row[x_key], y, marker=marker, s=60)
            smaller = y_key.endswith("_speedup") and y_key != f"{view.largest}_speedup"
            label = row["variant"] + (f" ({y_key.split('_')[0]})" if smaller else "")
            ax.annotate(label, (row[x_key], y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def _layers(data: dict[str, Any], path: Path) -> Path:
    variants = {n: v for n, v in data.get("variants", {}).items() if v.get("status") == "done"}
    fig = _figure((9, 6.5))
    axes = fig.subplots(2, 1, sharex=True)
    names: list[str] = []
    for name, variant in variants.items():
        layers = variant.get("layers", [])
        names = names or [layer["name"] for layer in layers]
        x = range(len(layers))
        axes[0].plot(x, [layer["sparsity"] for layer in layers], marker="o", label=name)
        axes[1].plot(x, [layer["width"] / layer["dense_width"] if layer["dense_width"] else 1.0
                         for layer in layers], marker="o", label=name)
    axes[0].set_ylabel("weight sparsity")
    axes[1].set_ylabel("width kept (of dense)")
    axes[1].set_xticks(range(len(names)))
    axes[1].set_xticklabels(names, rotation=75, fontsize=6)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_ylim(-0.05, 1.05)
    if variants:
        axes[0].legend(fontsize=7, ncol=3)
    axes[0].set_title("per-layer sparsity and width")
    return _save(fig, path)


def write_plots(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write accuracy_vs_compression.png, speedup_vs_compression.png and layers.png.

    Args:
        data: the results document.
        out_dir: the folder to write into.

    Returns:
        The written paths.
    """
    rows = flat_rows(data)
    view = task_view(data)
    quality = "top-1 accuracy after fine-tuning (%)" if view == IMAGE \
        else f"{view.label} after {view.recovery}"
    batches = " and ".join(view.batch_keys)
    compression = "compression (dense nonzero params / nonzero params)"
    return [
        _scatter(rows, "compression", ["acc_after"], quality,
                 f"{'accuracy' if view == IMAGE else view.label} vs compression",
                 out_dir / "accuracy_vs_compression.png", compression, view),
        _scatter(rows, "compression", [f"{b}_speedup" for b in view.batch_keys],
                 f"CPU speedup over dense ({batches})", "latency speedup vs compression",
                 out_dir / "speedup_vs_compression.png", compression, view),
        _layers(data, out_dir / "layers.png"),
    ]
