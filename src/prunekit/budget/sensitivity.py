"""Data-aware sensitivity: how much the model's outputs move when one group is cut.

For every prunable group and each kept fraction, the group's lowest-scored channels are
zeroed in a copy of the model (the producing filters, their biases and norm scales: what
removing them does, except that a LayerNorm still counts them), the calibration batches are
run, and the loss is the mean squared change of the outputs relative to their mean square
(0 = unchanged). :func:`sensitivity` returns the scan as a table and a plot; with
``calibration=`` batches, a budgeted ``pk.Structured(target=...)`` weighs each group's
importance by it (:func:`group_weights`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import CalibrationError, SpecError
from ..graph.groups import Analysis, Group, analyze
from ..graph.state import BIAS, NORM, OUT
from ..importance.channel import channel_scores
from ..inputs import ExampleInputs, eval_mode, model_outputs
from ..io.atomic import atomic_path
from ..select.structured import GroupChoice, removal_order
from ..targets import IgnoreEntry

FRACTIONS = (0.75, 0.5, 0.25)
ZEROED_ROLES = (OUT, BIAS, NORM)
KEPT_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class GroupSensitivity:
    """One group's scan: the output loss at each kept fraction."""

    group: int
    name: str  # the first layer producing the group
    size: int
    kept: tuple[float, ...]
    loss: tuple[float, ...]

    @property
    def mean_loss(self) -> float:
        """The loss averaged over the kept fractions tried."""
        return sum(self.loss) / len(self.loss) if self.loss else 0.0


@dataclass(frozen=True)
class SensitivityReport:
    """The scan of every prunable group (see the module docstring)."""

    fractions: tuple[float, ...]
    batches: int
    groups: tuple[GroupSensitivity, ...]

    def table(self) -> str:
        """A text table: one row per group, most sensitive first."""
        head = " ".join(f"kept {f:>4.2f}" for f in self.fractions)
        width = max([5, *(len(g.name) for g in self.groups)])
        lines = [f"{'group':<{width}} {'size':>5} {head}", "-" * (width + 6 + 10 * len(
            self.fractions))]
        for g in sorted(self.groups, key=lambda g: -g.mean_loss):
            cells = " ".join(f"{value:>9.4f}" for value in g.loss)
            lines.append(f"{g.name:<{width}} {g.size:>5} {cells}")
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Save loss vs kept fraction, one line per group, as a PNG (needs matplotlib).

        Raises:
            SpecError: matplotlib is not installed (the ``report`` extra).
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise SpecError("plotting the sensitivity needs matplotlib",
                            'pip install "prunekit[report]"') from exc
        figure = Figure(figsize=(7, 4.5))  # no pyplot: the user's backend stays as it was
        FigureCanvasAgg(figure)
        axes = figure.subplots()
        for g in self.groups:
            axes.plot([1.0, *g.kept], [0.0, *g.loss], marker="o", label=g.name)
        axes.set_xlabel("kept fraction of the group's channels")
        axes.set_ylabel("output loss (relative squared change)")
        axes.invert_xaxis()
        if len(self.groups) <= 12:
            axes.legend(fontsize=7)
        figure.tight_layout()
        out = Path(path)
        with atomic_path(out, overwrite=True) as tmp:
            figure.savefig(tmp, dpi=120)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scan."""
        return {"fractions": list(self.fractions), "batches": self.batches,
                "groups": [{"group": g.group, "name": g.name, "size": g.size,
                            "kept": list(g.kept), "loss": list(g.loss)} for g in self.groups]}

    def __str__(self) -> str:
        return self.table()


def _name(group: Group) -> str:
    """The first layer producing the group, and how many more do (``conv3 (+2)``)."""
    producers = list(dict.fromkeys(m.key.rpartition(".")[0] or m.key for m in group.members
                                   if m.role == OUT))
    if not producers:
        return f"group {group.index}"
    return producers[0] + (f" (+{len(producers) - 1})" if len(producers) > 1 else "")


def _slices(model: nn.Module, analysis: Analysis,
            channels: torch.Tensor) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
    """(tensor, dim, indices) the channels own among producing weights, biases and norms."""
    state = model.state_dict(keep_vars=True)
    chosen = torch.zeros(analysis.num_channels, dtype=torch.bool)
    chosen[channels] = True
    found = []
    for member in analysis.members:
        leaf = member.key.rpartition(".")[2]
        if member.role not in ZEROED_ROLES or member.dim < 0 or leaf in KEPT_BUFFERS:
            continue
        valid = member.channel >= 0
        hit = torch.zeros_like(valid)
        hit[valid] = chosen[member.channel[valid]]
        if bool(hit.any()):
            tensor = state[member.key]
            found.append((tensor, member.dim,
                          hit.nonzero().flatten().to(tensor.device)))
    return found


def _loss(model: nn.Module, batches: Sequence[ExampleInputs],
          dense: list[list[torch.Tensor]]) -> float:
    total = 0.0
    for batch, reference in zip(batches, dense, strict=True):
        outputs = model_outputs(model, batch)
        for out, ref in zip(outputs, reference, strict=True):
            if out.is_floating_point():
                scale = ref.float().pow(2).mean().clamp(min=1e-12)
                total += float((out.float() - ref.float()).pow(2).mean() / scale)
    return total / max(len(batches), 1)


def _scan_group(work: nn.Module, analysis: Analysis, group: Group, scores: torch.Tensor,
                fractions: Sequence[float], batches: Sequence[ExampleInputs],
                dense: list[list[torch.Tensor]]) -> GroupSensitivity:
    choice = GroupChoice(group.channels, analysis.frozen[group.channels], group.unit)
    order = removal_order(choice, scores)
    losses = []
    for fraction in fractions:
        gone = order[: min(order.numel(), group.size - max(1, math.ceil(fraction * group.size)))]
        slices = _slices(work, analysis, gone)
        saved = [t.detach().index_select(d, i).clone() for t, d, i in slices]
        with torch.no_grad():
            for tensor, dim, index in slices:
                tensor.index_fill_(dim, index, 0.0)
            try:
                losses.append(_loss(work, batches, dense))
            finally:
                for (tensor, dim, index), values in zip(slices, saved, strict=True):
                    tensor.index_copy_(dim, index, values)
    return GroupSensitivity(group.index, _name(group), group.size, tuple(fractions),
                            tuple(losses))


def scan(model: nn.Module, analysis: Analysis, scores: torch.Tensor,
         batches: Sequence[ExampleInputs], fractions: Sequence[float] = FRACTIONS,
         progress: bool = True) -> SensitivityReport:
    """The sensitivity of every group of ``analysis`` that has a channel to remove.

    Args:
        model: the analysed model (a copy is zeroed; the model is not changed).
        analysis: its channels.
        scores: channel importance (which channels a kept fraction drops).
        batches: calibration inputs.
        fractions: kept fractions to try.
        progress: show a tqdm bar on a terminal.

    Raises:
        CalibrationError: no batch, or a batch the model does not run on.
    """
    if not batches:
        raise CalibrationError("a sensitivity scan needs calibration batches",
                               "pass a list of inputs the model accepts")
    work = copy.deepcopy(model).eval()
    try:
        dense = [model_outputs(work, batch) for batch in batches]
    except Exception as exc:  # noqa: BLE001 - user batches may fail in any way
        raise CalibrationError(f"a calibration batch does not run: {type(exc).__name__}: {exc}",
                               "pass inputs the model accepts") from exc
    groups = [g for g in analysis.groups if not bool(g.frozen.all()) and g.size > 1]
    found = []
    with eval_mode(work), tqdm(groups, desc="sensitivity", unit="group",
                               disable=None if progress else True, leave=False) as bar:
        for group in bar:
            found.append(_scan_group(work, analysis, group, scores, fractions, batches, dense))
    return SensitivityReport(tuple(fractions), len(batches), tuple(found))


def group_weights(report: SensitivityReport, groups: Sequence[Group]) -> dict[int, float]:
    """Per group index, its loss per channel relative to the mean over groups (the weight
    a budget gives the group's channels; unscanned groups get 1)."""
    size = {g.index: g.size for g in groups}
    per_channel = {s.group: (s.mean_loss + 1e-9) / size[s.group] for s in report.groups}
    mean = sum(per_channel.values()) / len(per_channel) if per_channel else 1.0
    return {index: value / mean for index, value in per_channel.items()}


def sensitivity(
    model: nn.Module,
    example_inputs: ExampleInputs,
    data: Iterable[ExampleInputs],
    *,
    fractions: Sequence[float] = FRACTIONS,
    importance: str = "l1",
    ignore: Iterable[IgnoreEntry] = (),
    max_batches: int = 8,
    progress: bool = True,
) -> SensitivityReport:
    """Scan how much each prunable group's removal changes the model's outputs.

    Args:
        model: the model (not changed).
        example_inputs: inputs to trace it on (as for structured pruning).
        data: calibration batches (model inputs); the first ``max_batches`` are used.
        fractions: kept fractions to try per group.
        importance: which channels go first (``"l1"``, ``"l2"``, ``"bn_scale"``, ``"random"``).
        ignore: modules whose channels stay (as for ``pk.prune``).
        max_batches: at most this many batches.
        progress: show a tqdm bar on a terminal.

    Returns:
        A :class:`SensitivityReport`: ``.table()``, ``.plot(path)``, ``.to_dict()``.

    Raises:
        SpecError: a fraction outside (0, 1) or an unknown importance.
        CalibrationError: no batch, or one the model does not run on.

    Example:
        >>> import prunekit as pk
        >>> net, x = pk.zoo.build("resnet"), pk.zoo.example_inputs("resnet")
        >>> report = pk.sensitivity(net, x, [x], fractions=(0.5,), progress=False)
        >>> len(report.groups) > 0 and all(g.loss[0] >= 0 for g in report.groups)
        True
    """
    if any(not 0.0 < f < 1.0 for f in fractions) or not fractions:
        raise SpecError(f"sensitivity fractions must be in (0, 1), got {tuple(fractions)}")
    if importance not in ("l1", "l2", "bn_scale", "random"):
        raise SpecError(f"unknown importance {importance!r} for a sensitivity scan",
                        "choose one of: l1, l2, bn_scale, random")
    batches = [batch for _, batch in zip(range(max_batches), data, strict=False)]
    analysis = analyze(model, example_inputs, list(ignore))
    scores = channel_scores(importance, analysis, model)
    return scan(model, analysis, scores, batches, fractions, progress)
