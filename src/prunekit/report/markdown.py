"""report.md: settings, the measured table, the unstructured-vs-structured table, notes."""

from __future__ import annotations

import json
from typing import Any

from .mission import mission_table
from .rows import failed_rows, flat_rows, missing_variants
from .sparse import sparse_section
from .tables import header, markdown_table, table_cells
from .task import IMAGE, TaskView, task_view

CONTROL_NOTE = (
    "`dense+recovery` is the control: the dense baseline fine-tuned with exactly the "
    "variants' budget (same recipe, data order and seed), nothing pruned. \"vs baseline\" "
    "includes the gain of that extra training; \"vs control\" is what pruning itself cost."
)
TEXT_CONTROL_NOTE = (
    "`dense+recovery` is the control: the dense encoder distilled with exactly the variants' "
    "budget (same batches, steps, learning rate, dropout and seed), nothing pruned. \"vs "
    "baseline\" is the change against the dense encoder; \"vs control\" against the control, "
    "what pruning itself cost. `cos vs dense`: mean cosine between the model's and the dense "
    "model's sentence embeddings of held-out sentences; `ρ` columns: Spearman correlation of "
    "embedding cosine similarities with human similarity ratings (higher is better; the dense "
    "encoder's are the reference)."
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


def _text_settings_lines(data: dict[str, Any], view: TaskView) -> list[str]:
    settings, env = data.get("settings", {}), data.get("environment", {})
    task = data.get("task", {})
    budget, info = task.get("budget", {}), task.get("data", {})
    source = (data.get("dense") or {}).get("baseline", {}).get("source", "n/a")
    batches = " and ".join(str(b) for b in view.batches)
    return [
        f"- model `{task.get('model')}` ({source}), text: {task.get('dataset')}"
        f"{' (quick: small budget)' if settings.get('quick') else ''}, seed "
        f"{settings.get('seed')}",
        f"- calibration: {info.get('calibration', 'n/a')}; distillation: "
        f"{info.get('train', 'n/a')}; held out: {info.get('held_out', 'n/a')}; human "
        f"ratings: {info.get('human', 'n/a')}",
        f"- recovery per variant and for the dense control: `distill_outputs` on the dense "
        f"sentence embeddings, {settings.get('epochs')} epoch(s) of "
        f"{budget.get('train', 'n/a')} sentences in batches of {budget.get('batch', 'n/a')} "
        f"(≤ {budget.get('train_length', 'n/a')} tokens), AdamW lr {settings.get('lr')} "
        "constant, dropout on",
        f"- CPU {env.get('cpu')}, {settings.get('threads')} thread(s), torch {env.get('torch')}; "
        f"latency at batch {batches}, every sentence padded to "
        f"{budget.get('latency_length', 'n/a')} tokens: median ± IQR of interleaved timings, "
        "speedup vs dense timed in the same run; models with zeros inside their layers are "
        "timed after `pk.to_sparse` (see Sparse kernels)",
        "- parameters and bytes on disk include the token embeddings (never pruned) and the "
        "pooler (unused by the embeddings, never pruned); bytes on disk: the saved "
        f"prunekit folder; peak memory: weights + peak activations of one {view.largest} "
        "forward pass",
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
    view = task_view(data)
    details = {**data.get("variants", {})}
    if data.get("control"):
        details[data["control"]["name"]] = data["control"]
    image = view == IMAGE
    settings = _settings_lines(data) if image else _text_settings_lines(data, view)
    parts = ["# prunekit compare report", "", *settings, ""]
    parts += ["## Measured results", "",
              markdown_table(header(view), [table_cells(r, view) for r in rows]), "",
              CONTROL_NOTE if image else TEXT_CONTROL_NOTE, ""]
    parts += ["## Unstructured vs structured, measured", "",
              mission_table(rows, data.get("variants", {}), view), ""]
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
