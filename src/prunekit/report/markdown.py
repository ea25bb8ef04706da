"""report.md: settings, the measured table, the unstructured-vs-structured table, notes."""

from __future__ import annotations

import json
from typing import Any

from .mission import mission_table
from .rows import failed_rows, flat_rows, missing_variants
from .sparse import sparse_section
from .tables import HEADER, markdown_table, table_cells

CONTROL_NOTE = (
    "`dense+recovery` is the control: the dense baseline fine-tuned with exactly the "
    "variants' budget (same recipe, data order and seed), nothing pruned. \"vs baseline\" "
    "includes the gain of that extra training; \"vs control\" is what pruning itself cost."
)
PLOTS = ("accuracy_vs_compression.png", "speedup_vs_compression.png", "layers.png")


def _settings_lines(data: dict[str, Any]) -> list[str]:
    settings, env = data.get("settings", {}), data.get("environment", {})
    baseline = (data.get("dense") or {}).get("baseline", {})
    return [
        f"- model `{settings.get('model')}`, data {settings.get('dataset')}"
        f"{' (quick: subsets)' if settings.get('quick') else ''}, seed {settings.get('seed')}",
        f"- dense baseline: {baseline.get('source', 'n/a')} checkpoint, "
        f"{baseline.get('epochs', 'n/a')} epochs; its command: `{baseline.get('command', '')}`",
        f"- fine-tuning per variant and for the dense control: {settings.get('epochs')} "
        f"epoch(s), SGD lr {settings.get('lr')} cosine, distillation "
        f"{'on' if settings.get('distill') else 'off'}",
        f"- CPU {env.get('cpu')}, {settings.get('threads')} thread(s), torch {env.get('torch')}; "
        f"latency = median ± IQR of interleaved timings, speedup vs dense timed in the same run; "
        "models with zeros inside their layers are timed after `pk.to_sparse` (see Sparse "
        "kernels)",
        "- bytes on disk: the saved prunekit folder (safetensors + manifest); "
        "peak memory: weights + peak activations of one batch-64 forward pass",
    ]


def _problems(data: dict[str, Any]) -> list[str]:
    failed = failed_rows(data)
    missing = missing_variants(data)
    if not (failed or missing or data.get("interrupted")):
        return []
    parts = ["## Missing or failed", ""]
    if data.get("interrupted"):
        parts.append("- the run was interrupted; rerun the same command to resume")
    parts += [f"- {name}: not measured" for name in missing if name not in failed]
    parts += [f"- {name}: failed: {error}" for name, error in failed.items()]
    return [*parts, ""]


def render_markdown(data: dict[str, Any], *, plots: bool = True) -> str:
    """The whole report.md text.

    Args:
        data: the results document.
        plots: the PNG plots were drawn (linked from the report; otherwise it says so).

    Returns:
        The markdown.
    """
    rows = flat_rows(data)
    details = {**data.get("variants", {})}
    if data.get("control"):
        details[data["control"]["name"]] = data["control"]
    parts = ["# prunekit compare report", "", *_settings_lines(data), ""]
    parts += ["## Measured results", "", markdown_table(HEADER, [table_cells(r) for r in rows]),
              "", CONTROL_NOTE, ""]
    parts += ["## Unstructured vs structured, measured", "",
              mission_table(rows, data.get("variants", {})), ""]
    parts += sparse_section(rows, details)
    parts += _problems(data)
    parts += ["## Plots", ""]
    if plots:
        parts += [f"![{name.split('_')[0].removesuffix('.png')}]({name})" for name in PLOTS]
    else:
        parts.append("not drawn (--no-plots)")
    parts += ["", "## Settings (machine-readable)", "", "```json",
              json.dumps(data.get("settings", {}), indent=2), "```", ""]
    return "\n".join(parts)
