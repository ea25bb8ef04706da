"""The unstructured-vs-structured table: every verdict derived from this run's figures.

One column per family (unstructured, structured, combined), represented by its most
compressed finished variant. Each cell states what the measured figures say (which family
lost less accuracy against the dense control, which ran faster than dense at the measured
batch sizes, which is smaller on disk, ...); a figure that was not measured says so. No
verdict is written in advance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .fmt import times
from .sparse import speed_note
from .tables import markdown_table
from .task import IMAGE, TaskView

FAMILIES = ("unstructured", "structured", "combined")
SPEED_TOLERANCE = 0.05  # a speedup within 5% of 1.0 counts as "as fast as dense"
ZEROS_INSIDE = 0.01  # a layer with at least 1% zero weights has "zeros inside"
NOT_MEASURED = "not measured"
NOTE = (
    "Each family is represented by its most compressed finished variant. Faster / slower: a "
    f"CPU speedup more than {SPEED_TOLERANCE:.0%} away from the dense model's, timed "
    "interleaved with it; a model with zeros inside its layers is timed after `pk.to_sparse` "
    "(the layers it ran sparse are named in the speed cell). Accuracy loss is against the "
    "dense control (the baseline given the same fine-tuning), then against the baseline."
)



def note(view: TaskView = IMAGE) -> str:
    """How the verdicts are drawn (the image task's is :data:`NOTE`)."""
    if view == IMAGE:
        return NOTE
    return NOTE.replace("Accuracy loss", f"Loss of {view.label}").replace(
        "(the baseline given the same fine-tuning)",
        "(the dense model given the same distillation)")


Reps = dict[str, dict[str, Any]]  # family -> its representative flat row
Detail = dict[str, Any]  # the representative's results row (per-layer table, conversions)


def representative(rows: list[dict[str, Any]], family: str) -> dict[str, Any] | None:
    """The finished variant of ``family`` with the most compression (nonzero params)."""
    done = [r for r in rows if r["family"] == family and r["status"] == "done"]
    return max(done, key=lambda r: r["compression"] or 0.0, default=None)


def _ranked(reps: Reps, key: Callable[[dict[str, Any]], float | None],
            higher_is_better: bool) -> list[tuple[str, float]]:
    """Families with a value for ``key``, best first."""
    values = [(f, v) for f, r in reps.items() if (v := key(r)) is not None]
    return sorted(values, key=lambda fv: fv[1], reverse=higher_is_better)


def _granularity(row: dict[str, Any], detail: Detail, reps: Reps,
                 view: TaskView = IMAGE) -> str:
    layers: list[dict[str, Any]] = detail.get("layers", [])
    if not layers:
        return NOT_MEASURED
    narrower = sum(1 for x in layers if x["dense_width"] and x["width"] < x["dense_width"])
    inside = sum(1 for x in layers if x["sparsity"] >= ZEROS_INSIDE)
    n = len(layers)
    if narrower and inside:
        return f"channels and single weights: {narrower}/{n} layers narrower, {inside}/{n} " \
               "with zeros inside"
    if narrower:
        return f"whole channels: {narrower}/{n} layers narrower, none with zeros inside"
    if inside:
        return f"single weights: no layer narrower, {inside}/{n} with zeros inside"
    return f"nothing removed: no layer narrower or with zeros inside ({n} layers)"


def _pattern(row: dict[str, Any], detail: Detail, reps: Reps,
             view: TaskView = IMAGE) -> str:
    compression, macs = row["compression"], row["macs_reduction"]
    if compression is None or macs is None:
        return NOT_MEASURED
    figures = f"{times(compression, 1)} fewer nonzeros, MACs /{macs:.1f}"
    if macs >= 1 + SPEED_TOLERANCE:
        return f"regular: smaller dense tensors ({figures})"
    if compression >= 1 + SPEED_TOLERANCE:
        return f"irregular: zeros inside dense tensors, dense kernels still compute them " \
               f"({figures})"
    return f"no fewer nonzeros or MACs ({figures})"


def _speed_word(speedup: float) -> str:
    if speedup >= 1 + SPEED_TOLERANCE:
        return "faster than"
    if speedup <= 1 / (1 + SPEED_TOLERANCE):
        return "slower than"
    return "as fast as"


def _speed(row: dict[str, Any], detail: Detail, reps: Reps,
           view: TaskView = IMAGE) -> str:
    measured = {b: row[f"{b}_speedup"] for b in view.batch_keys
                if row[f"{b}_speedup"] is not None}
    if not measured:
        return NOT_MEASURED
    batches: dict[str, list[str]] = {}
    for batch, speedup in measured.items():
        batches.setdefault(_speed_word(speedup), []).append(batch)
    verdict = "; ".join(f"{word} dense at {' and '.join(b)}" for word, b in batches.items())
    figures = " / ".join(f"{b} {times(s)}" for b, s in measured.items())
    text = f"{verdict} ({figures})"
    ranking = _ranked(reps, lambda r: r[f"{view.largest}_speedup"], higher_is_better=True)
    if len(ranking) > 1 and ranking[0][0] == row["family"]:
        text += f"; fastest family at {view.largest}"
    note = speed_note(detail)
    return f"{text}; {note}" if note else text


def _control_delta(row: dict[str, Any]) -> float | None:
    return row["delta_control_pt"]


def _accuracy(row: dict[str, Any], detail: Detail, reps: Reps,
              view: TaskView = IMAGE) -> str:
    control, base = row["delta_control_pt"], row["delta_pt"]
    if control is None and base is None:
        return NOT_MEASURED
    unit = view.unit
    against = f"{view.delta_text(control)} {unit} vs control" if control is not None \
        else "vs control: not measured"
    text = f"{against} ({view.delta_text(base)} {unit} vs baseline)"
    ranking = _ranked(reps, _control_delta, higher_is_better=True)
    if control is None or len(ranking) < 2:
        return text
    best_family, best = ranking[0]
    if best_family == row["family"]:
        return f"{text}; least loss of the {len(ranking)} families"
    more = f"{best - control:.2f}" if view.percent else f"{best - control:.4f}"
    return f"{text}; {more} {unit} more loss than {best_family}"


def _layer_spread(row: dict[str, Any], detail: Detail, reps: Reps,
                  view: TaskView = IMAGE) -> str:
    layers: list[dict[str, Any]] = detail.get("layers", [])
    if not layers:
        return NOT_MEASURED
    sparsities = [x["sparsity"] for x in layers]
    widths = [x["width"] / x["dense_width"] for x in layers if x["dense_width"]]
    uneven = max(sparsities) - min(sparsities) >= ZEROS_INSIDE or \
        (bool(widths) and max(widths) - min(widths) > 0)
    shape = "varies by layer" if uneven else "the same in every layer"
    return f"{shape}: layer sparsity {_span(sparsities)}" + \
        (f", width kept {_span(widths)}" if widths else "")


def _span(values: list[float]) -> str:
    low, high = f"{min(values):.0%}", f"{max(values):.0%}"
    return low if low == high else f"{low}-{high}"


def _disk(row: dict[str, Any], detail: Detail, reps: Reps,
          view: TaskView = IMAGE) -> str:
    ratio = row["bytes_ratio"]
    if ratio is None:
        return NOT_MEASURED
    text = f"{times(ratio, 3)} of dense"
    ranking = _ranked(reps, lambda r: r["bytes_ratio"], higher_is_better=False)
    if len(ranking) < 2:
        return text
    best_family, best = ranking[0]
    if best_family == row["family"]:
        return f"{text}; smallest of the {len(ranking)} families"
    return f"{text}; {ratio / best:.1f}x the size of {best_family}"


def _speedup_of(batch: str) -> Callable[[dict[str, Any]], float | None]:
    def speedup(row: dict[str, Any]) -> float | None:
        value: float | None = row[f"{batch}_speedup"]
        return value

    return speedup


def _wins(row: dict[str, Any], detail: Detail, reps: Reps,
          view: TaskView = IMAGE) -> str:
    quality = "accuracy" if view.percent else view.label
    axes: dict[str, tuple[Callable[[dict[str, Any]], float | None], bool]] = {
        f"least {quality} loss vs control": (_control_delta, True)}
    for b in view.batch_keys:
        axes[f"fastest at {b}"] = (_speedup_of(b), True)
    axes["smallest on disk"] = (lambda r: r["bytes_ratio"], False)
    axes["fewest MACs"] = (lambda r: r["macs_reduction"], True)
    won, compared = [], 0
    for axis, (key, higher) in axes.items():
        ranking = _ranked(reps, key, higher)
        if len(ranking) < 2 or key(row) is None:
            continue
        compared += 1
        if ranking[0][0] == row["family"]:
            won.append(axis)
    if not compared:
        return f"{NOT_MEASURED} (no other family to compare with)"
    return ", ".join(won) if won else "best on none of the measured axes"


DIMENSIONS: dict[str, Callable[[dict[str, Any], Detail, Reps, TaskView], str]] = {
    "what is removed": _granularity,
    "sparsity pattern": _pattern,
    "CPU speed vs dense": _speed,
    "accuracy loss": _accuracy,
    "per-layer allocation": _layer_spread,
    "bytes on disk": _disk,
    "best of this run at": _wins,
}


def mission_table(rows: list[dict[str, Any]], variants: dict[str, Any],
                  view: TaskView = IMAGE) -> str:
    """Markdown table: one column per family, each cell derived from measured figures.

    Args:
        rows: flat rows (:func:`prunekit.report.rows.flat_rows`).
        variants: the results document's variants (their per-layer tables and
            ``pk.to_sparse`` records).
        view: the task (names its quality figure and batch sizes; default: image).

    Returns:
        The table, followed by a note on how the verdicts are drawn.
    """
    found = {f: representative(rows, f) for f in FAMILIES}
    reps: Reps = {f: r for f, r in found.items() if r is not None}
    header = ["dimension"]
    header += [f"{f} ({r['variant']})" if (r := found[f]) else f"{f} ({NOT_MEASURED})"
               for f in FAMILIES]
    body = []
    for dimension, derive in DIMENSIONS.items():
        cells = [dimension if view.percent else dimension.replace("accuracy", view.label)]
        for family in FAMILIES:
            rep = found[family]
            if rep is None:
                cells.append(NOT_MEASURED)
                continue
            cells.append(derive(rep, variants.get(rep["variant"], {}), reps, view))
        body.append(cells)
    return markdown_table(header, body) + "\n\n" + note(view)
