"""What a channel costs: params, MACs or latency as a function of every tensor's widths.

Removing channels shrinks tensor dims (the analysis says which channel each index of each
dim belongs to). A cost is a sum of *terms* plus a constant; each term is
``coef * prod(curve_d(width_d))`` over the pruned dims of one tensor or layer, where a
curve is the width itself (params: ``numel`` is the product of the dims; MACs: ``uses *
numel``) or a measured latency curve. So the cost of any removal is exact for params, exact
for the MACs of weight-reading ops, and as good as the table for latency.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..graph.groups import Analysis, Member
from ..inputs import ExampleInputs
from .flops import weight_macs


@dataclass(frozen=True)
class Curve:
    """A cost factor measured at a few widths, linear in between (clamped outside)."""

    widths: tuple[float, ...]  # ascending
    values: tuple[float, ...]

    def __call__(self, width: float) -> float:
        """The factor at ``width`` (interpolated)."""
        return float(np.interp(width, self.widths, self.values))


@dataclass
class Term:
    """``coef * prod(curve(width))`` over some pruned dims (a curve of None: the width)."""

    coef: float
    dims: tuple[int, ...]  # indices into CostModel.members
    curves: tuple[Curve | None, ...]
    label: str = ""

    def value(self, widths: np.ndarray) -> float:
        """The term at the given member widths."""
        out = self.coef
        for dim, curve in zip(self.dims, self.curves, strict=True):
            out *= widths[dim] if curve is None else curve(widths[dim])
        return float(out)


@dataclass
class CostModel:
    """A cost over the pruned dims of an analysis.

    Attributes:
        kind: ``"params"``, ``"macs"`` or ``"latency"``.
        members: the pruned dims the terms read.
        full: width of every member dim in the dense model.
        terms: the terms; ``constant`` is what no channel changes.
        owned: ``(channel, member index, indices of that dim it owns)``, one row per pair.
        unit: what a cost value counts, for messages ("parameters", "MACs", "ms").
    """

    kind: str
    members: list[Member]
    full: np.ndarray
    terms: list[Term]
    constant: float
    owned: np.ndarray  # (rows, 3) int64
    unit: str
    member_terms: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.member_terms = [[] for _ in self.members]
        for index, term in enumerate(self.terms):
            for dim in term.dims:
                self.member_terms[dim].append(index)
        plain = [t for t in self.terms if all(c is None for c in t.curves)]
        self._curved = [t for t in self.terms if any(c is not None for c in t.curves)]
        depth = max((len(t.dims) for t in plain), default=0)
        self._coef = np.array([t.coef for t in plain], dtype=np.float64)
        self._dims = np.full((len(plain), depth), len(self.members), dtype=np.int64)
        for row, term in enumerate(plain):
            self._dims[row, : len(term.dims)] = term.dims

    @property
    def dense(self) -> float:
        """The cost of the dense model."""
        return self.total(self.full)

    def widths(self, removed: torch.Tensor) -> np.ndarray:
        """Width of every member dim once the channels in ``removed`` are gone."""
        gone = removed.cpu().numpy()[self.owned[:, 0]]
        lost = np.bincount(self.owned[gone, 1], weights=self.owned[gone, 2],
                           minlength=len(self.members))
        return self.full - lost

    def total(self, widths: np.ndarray) -> float:
        """The cost at the given member widths."""
        padded = np.append(widths, 1.0)
        plain = float(self._coef @ padded[self._dims].prod(axis=1)) if len(self._coef) else 0.0
        return self.constant + plain + sum(term.value(widths) for term in self._curved)

    def cost(self, removed: torch.Tensor) -> float:
        """The cost once the channels in ``removed`` are gone."""
        return self.total(self.widths(removed))


def ownership(members: list[Member]) -> np.ndarray:
    """``(channel, member index, count)`` rows: how many indices of each dim a channel owns."""
    rows = [np.zeros((0, 3), dtype=np.int64)]
    for index, member in enumerate(members):
        channel = member.channel[member.channel >= 0]
        if channel.numel():
            ids, counts = channel.unique(return_counts=True)
            rows.append(np.stack([ids.numpy(), np.full(ids.numel(), index), counts.numpy()], 1))
    return np.concatenate(rows).astype(np.int64)


def _tensor_terms(analysis: Analysis, weights: dict[str, float],
                  shapes: dict[str, torch.Size]) -> tuple[list[Member], list[Term], float]:
    """One term per tensor in ``weights``: ``weight * numel`` as a product of its widths.

    Returns:
        The member dims used, the terms, and the summed dense value of tensors that no
        channel touches (part of the constant).
    """
    by_key: dict[str, list[Member]] = {}
    for member in analysis.members:
        if member.key in weights and member.dim >= 0 and bool((member.channel >= 0).any()):
            by_key.setdefault(member.key, []).append(member)
    members: list[Member] = []
    terms: list[Term] = []
    untouched = 0.0
    for key, weight in weights.items():
        shape = shapes[key]
        dims = by_key.get(key, [])
        if not dims:
            untouched += weight * shape.numel()
            continue
        rest = float(shape.numel())
        for member in dims:
            rest /= shape[member.dim]
        first = len(members)
        members.extend(dims)
        terms.append(Term(weight * rest, tuple(range(first, len(members))),
                          (None,) * len(dims), key))
    return members, terms, untouched


def _model(kind: str, analysis: Analysis, weights: dict[str, float],
           shapes: dict[str, torch.Size], total: float, unit: str) -> CostModel:
    members, terms, _ = _tensor_terms(analysis, weights, shapes)
    full = np.array([float(m.channel.numel()) for m in members], dtype=np.float64)
    modelled = sum(term.value(full) for term in terms)
    return CostModel(kind, members, full, terms, total - modelled, ownership(members), unit)


def params_cost(analysis: Analysis, model: nn.Module) -> CostModel:
    """Parameter count as a function of the pruned widths (exact).

    Args:
        analysis: the model's channels.
        model: the analysed model (read only).

    Returns:
        A :class:`CostModel` whose dense cost is ``count_params(model)``.
    """
    params = dict(model.named_parameters())
    shapes = {k: p.shape for k, p in params.items()}
    total = float(sum(p.numel() for p in params.values()))
    return _model("params", analysis, dict.fromkeys(params, 1.0), shapes, total, "parameters")


def macs_cost(analysis: Analysis, model: nn.Module, example_inputs: ExampleInputs) -> CostModel:
    """MACs of one forward pass on ``example_inputs`` as a function of the pruned widths.

    Each weight-reading op costs ``uses * weight.numel()`` (exact for convolutions and matrix
    products); MACs no weight owns (e.g. attention scores) are held constant.

    Returns:
        A :class:`CostModel` whose dense cost is ``count_macs(model, example_inputs)``.
    """
    per_weight, total = weight_macs(model, example_inputs)
    params = dict(model.named_parameters())
    uses = {k: macs / params[k].numel() for k, macs in per_weight.items() if k in params}
    shapes = {k: params[k].shape for k in uses}
    return _model("macs", analysis, uses, shapes, float(total), "MACs")
