"""report.md: settings, the measured table, the MISSION.md table, notes."""

from __future__ import annotations

import json
from typing import Any

from .mission import mission_table
from .rows import flat_rows, missing_variants
from .tables import HEADER, markdown_table, table_cells


def _settings_lines(data: dict[str, Any]) -> list[str]:
    settings, env = data.get("settings", {}), data.get("environment", {})
    baseline = (data.get("dense") or {}).get("baseline", {})
    return [
        f"- model `{settings.get('model')}`, data {settings.get('dataset')}"
        f"{' (quick: subsets)' if settings.get('quick') else ''}, seed {settings.get('seed')}",
        f"- dense baseline: {baseline.get('source', 'n/a')} checkpoint, "
        f"{baseline.get('epochs', 'n/a')} epochs; its command: `{baseline.get('command', '')}`",
        f"- fine-tuning per variant: {settings.get('epochs')} epoch(s), SGD lr "
        f"{settings.get('lr')} cosine, distillation {'on' if settings.get('distill') else 'off'}",
        f"- CPU {env.get('cpu')}, {settings.get('threads')} thread(s), torch {env.get('torch')}; "
        f"latency = median ± IQR of interleaved timings, speedup vs dense timed in the same run",
        "- bytes on disk: the saved prunekit folder (safetensors + manifest); "
        "peak memory: weights + peak activations of one batch-64 forward pass",
    ]


def render_markdown(data: dict[str, Any]) -> str:
    """The whole report.md text."""
    rows = flat_rows(data)
    parts = ["# prunekit compare report", "", *_settings_lines(data), ""]
    parts += ["## Measured results", "", markdown_table(HEADER, [table_cells(r) for r in rows]), ""]
    parts += ["## Unstructured vs structured, measured", "",
              mission_table(rows, data.get("variants", {})), ""]
    failed = {n: v.get("error") for n, v in data.get("variants", {}).items()
              if v.get("status") == "failed"}
    missing = missing_variants(data)
    if failed or missing or data.get("interrupted"):
        parts += ["## Missing or failed", ""]
        if data.get("interrupted"):
            parts.append("- the run was interrupted; rerun the same command to resume")
        parts += [f"- {name}: not measured" for name in missing if name not in failed]
        parts += [f"- {name}: failed: {error}" for name, error in failed.items()]
        parts.append("")
    parts += ["## Plots", "", "![accuracy](accuracy_vs_compression.png)",
              "![speedup](speedup_vs_compression.png)", "![layers](layers.png)", ""]
    parts += ["## Settings (machine-readable)", "", "```json",
              json.dumps(data.get("settings", {}), indent=2), "```", ""]
    return "\n".join(parts)
