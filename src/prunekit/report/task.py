"""What the report names and how it formats the figures of the task a comparison ran.

The image task measures top-1 accuracy (shown in %, changes in points) at batch 1 and 64.
The sentence-encoder task (``--task minilm``) measures the mean cosine to the dense model's
embeddings (shown as it is, changes in cosine) plus Spearman correlations with human ratings,
at the batch sizes its results document names. A results document without ``task`` is an
image task's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fmt import pct, signed_pt


@dataclass(frozen=True)
class TaskView:
    """How one task's figures are named and formatted.

    Attributes:
        name: ``"image"`` or ``"minilm"``.
        primary: the results-row key of the main quality figure (``accuracy``,
            ``cosine``); ``<primary>_before`` is the figure before recovery.
        short: its short name in column names (``acc``, ``cos``).
        label: its name in headers (``acc``, ``cos vs dense``).
        unit: the unit of its changes (``pt``: points of percentage; ``cos``).
        recovery: what the recovery is called (``FT``: fine-tuning; ``distil``).
        extras: ``(results-row key, header label)`` of further quality figures.
        batches: the batch sizes timed.
    """

    name: str
    primary: str
    short: str
    label: str
    unit: str
    recovery: str
    extras: tuple[tuple[str, str], ...]
    batches: tuple[int, ...]

    @property
    def percent(self) -> bool:
        """The primary figure is a fraction shown in % (changes in points)."""
        return self.unit == "pt"

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """``("b1", "b64")`` style keys of the timed batch sizes."""
        return tuple(f"b{b}" for b in self.batches)

    @property
    def largest(self) -> str:
        """The key of the largest timed batch (``b64``)."""
        return f"b{max(self.batches)}"

    def delta(self, value: float | None, reference: float | None) -> float | None:
        """``value - reference`` in this task's unit (points for a percentage)."""
        if value is None or reference is None:
            return None
        return (value - reference) * (100.0 if self.percent else 1.0)

    def value_text(self, value: float | None) -> str:
        """The primary figure as shown: ``92.35`` (%) or ``0.9712``."""
        if self.percent:
            return pct(value)
        return "n/a" if value is None else f"{value:.4f}"

    def delta_text(self, value: float | None) -> str:
        """A change as shown: ``+0.60`` (points) or ``-0.0123``."""
        if self.percent:
            return signed_pt(value)
        return "n/a" if value is None else f"{value:+.4f}"

    def column(self, key: str) -> str:
        """A flat-row key as a results.csv column name (``acc_after`` -> ``cos_after``)."""
        renamed = key.replace("acc_", f"{self.short}_", 1) if key.startswith("acc_") else key
        return renamed.removesuffix("_pt") + f"_{self.unit}" if renamed.endswith("_pt") \
            else renamed


IMAGE = TaskView(name="image", primary="accuracy", short="acc", label="acc", unit="pt",
                 recovery="FT", extras=(), batches=(1, 64))


def task_view(data: dict[str, Any]) -> TaskView:
    """The view of the task a results document was made by (``data["task"]``)."""
    task = data.get("task")
    if not isinstance(task, dict) or task.get("name", "image") == "image":
        return IMAGE
    metrics: dict[str, str] = task.get("metrics", {})
    primary = str(task.get("primary", "cosine"))
    return TaskView(
        name=str(task["name"]), primary=primary, short=primary[:3],
        label=metrics.get(primary, primary), unit=primary[:3], recovery="distil",
        extras=tuple((k, v) for k, v in metrics.items() if k != primary),
        batches=tuple(int(b) for b in task.get("batches", IMAGE.batches)),
    )
