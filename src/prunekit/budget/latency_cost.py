"""Latency as a function of the pruned widths, from the per-layer table.

Each timed layer call is a term ``T_full * out_curve(outputs) * in_curve(inputs)``: its
full-width time, scaled by how its time changed when only its outputs, or only its inputs,
were narrowed in the table (linear in between the timed widths). Norms, and the activations
and poolings that follow a timed layer, have one curve, over their width. Layers with no
prunable side are constant. What the table does not time (adds, concatenations, reshapes,
functional activations) is assumed to shrink with the rest; the measured result says how
well that held.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from torch import nn

from ..graph.groups import Analysis, Member
from ..inputs import ExampleInputs
from .costs import CostModel, Curve, Term, ownership
from .latency_table import FRACTIONS, measure, point_key
from .layer_calls import LayerCall, layer_calls
from .targets import Latency

ALLOCATION_FRACTIONS = tuple(i / 8 for i in range(7, 0, -1))  # widths a group may keep


@dataclass(frozen=True)
class TableStats:
    """How the table was obtained: layer calls, widths needed, timed now, seconds."""

    calls: int
    points: int
    timed: int
    seconds: float


@dataclass(frozen=True)
class _Side:
    member: Member | None
    full: int  # layer width (channels)
    unit: int  # layer channels per member index (a grouped dim holds channels / groups)
    multiple: int  # widths timed are multiples of this (a grouped conv's groups)

    def widths(self) -> list[int]:
        out = {self.full}
        for fraction in FRACTIONS:
            out.add(max(self.multiple, round(fraction * self.full / self.multiple)
                        * self.multiple))
        return sorted(out)


def _sides(call: LayerCall, members: dict[tuple[str, int], Member]) -> tuple[_Side, _Side, bool]:
    """(inputs side, outputs side, tied) of a call. Tied (a norm, a depthwise conv): one
    width, the inputs', sets both."""
    s = call.settings
    key = call.weight
    n_in, n_out = int(s["in"]), int(s.get("out", s["in"]))
    groups = int(s.get("groups", 1))
    if call.kind == "Linear":
        return (_Side(members.get((key, 1)), n_in, 1, 1),
                _Side(members.get((key, 0)), n_out, 1, 1), False)
    if s.get("elementwise"):  # an activation or pooling: the width of what it follows
        side = _Side(members.get((key, int(s["member_dim"]))), n_in, 1, 1)
        return side, side, True
    if "groups" not in s:  # a norm
        side = _Side(members.get((key, 0)), n_in, 1, 1)
        return side, side, True
    transposed = call.kind.startswith("ConvTranspose")
    if groups > 1 and groups == n_in:  # depthwise: weight dim 0 holds the channels
        side = _Side(members.get((key, 0)), n_in, 1 if transposed else n_out // n_in, 1)
        return side, side, True
    in_dim, out_dim = (0, 1) if transposed else (1, 0)
    return (_Side(members.get((key, in_dim)), n_in, 1 if transposed else groups, groups),
            _Side(members.get((key, out_dim)), n_out, groups if transposed else 1, groups),
            False)


def _points(call: LayerCall, inputs: _Side, outputs: _Side,
            tied: bool) -> list[tuple[int, int]]:
    """The (inputs, outputs) widths to time."""
    if tied:
        return [(w, _tied_out(call, w)) for w in inputs.widths()]
    points = {(inputs.full, outputs.full)}
    if inputs.member is not None:
        points |= {(w, outputs.full) for w in inputs.widths()}
    if outputs.member is not None:
        points |= {(inputs.full, w) for w in outputs.widths()}
    return sorted(points)


def _tied_out(call: LayerCall, width: int) -> int:
    """Outputs of a tied layer at ``width`` inputs (a depthwise multiplier kept)."""
    s = call.settings
    return width * int(s["out"]) // int(s["in"]) if "out" in s else width


def _term(call: LayerCall, inputs: _Side, outputs: _Side, tied: bool,
          ms: dict[tuple[int, int], float], dim_of: dict[int, int]) -> Term | float:
    """The call's term, or its constant time when no side of it is pruned."""
    full_out = _tied_out(call, inputs.full) if tied else outputs.full
    full = ms[(inputs.full, full_out)]
    sides = [(inputs, lambda w: (w, _tied_out(call, w)))] if tied else [
        (inputs, lambda w: (w, full_out)), (outputs, lambda w: (inputs.full, w))]
    dims, curves = [], []
    for side, point in sides:
        if side.member is None:
            continue
        widths = side.widths()
        dims.append(dim_of[id(side.member)])
        curves.append(Curve(tuple(w / side.unit for w in widths),
                            tuple(ms[point(w)] / full for w in widths)))
    return Term(full, tuple(dims), tuple(curves), call.name) if dims else full


def _prunable(member: Member, analysis: Analysis) -> bool:
    """True if some index of the member belongs to a channel that is not frozen."""
    channel = member.channel[member.channel >= 0]
    return bool(channel.numel()) and not bool(analysis.frozen[channel].all())


def latency_cost(analysis: Analysis, model: nn.Module, example_inputs: ExampleInputs,
                 rows: int, target: Latency) -> tuple[CostModel, TableStats]:
    """The latency cost model of ``model`` at ``target``'s batch, device, dtype, threads.

    Args:
        analysis: the model's channels.
        model: the analysed model (run once to find its layers; not changed).
        example_inputs: inputs it accepts, ``rows`` of them.
        rows: their batch size.
        target: the latency target.

    Returns:
        The cost model (ms) and how the table was obtained.
    """
    start = time.perf_counter()
    members = {(m.key, m.dim): m for m in analysis.members if m.dim >= 0 and _prunable(m, analysis)}
    plans = [(call, *_sides(call, members))
             for call in layer_calls(model, example_inputs, rows, target.batch)]
    wanted = {(call, *point): point_key(call, *point, target)
              for call, inputs, outputs, tied in plans
              for point in _points(call, inputs, outputs, tied)}
    times, timed = measure(wanted, target)
    used: list[Member] = []
    dim_of: dict[int, int] = {}
    for _, inputs, outputs, _ in plans:
        for side in (inputs, outputs):
            if side.member is not None and id(side.member) not in dim_of:
                dim_of[id(side.member)] = len(used)
                used.append(side.member)
    terms: list[Term] = []
    constant = 0.0
    for call, inputs, outputs, tied in plans:
        ms = {(n_in, n_out): times[key] for (c, n_in, n_out), key in wanted.items()
              if c == call}
        term = _term(call, inputs, outputs, tied, ms, dim_of)
        if isinstance(term, Term):
            terms.append(term)
        else:
            constant += term
    full = np.array([float(m.channel.numel()) for m in used])
    cost = CostModel("latency", used, full, terms, constant, ownership(used), "ms")
    return cost, TableStats(len(plans), len(wanted), timed, time.perf_counter() - start)
