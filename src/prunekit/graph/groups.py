"""From a trace to channels and groups.

A *channel* is a set of atoms that must be removed together (one filter of a conv, the
matching BatchNorm entries, the matching input slice of every consumer, across residual adds
and concatenations). A *group* gathers the channels of one coupled width: every channel a
producer layer (conv / linear output dim, embedding dim) creates, united through residual
adds, so that layer-scope sparsity is applied per group.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from ..inputs import ExampleInputs
from ..targets import IgnoreEntry
from .state import FREE, OUT, ParamDim, TraceState
from .trace import trace
from .unionfind import Atoms


@dataclass
class Member:
    """One dim of one parameter or buffer: the channel (dense id, -1 = none) of each index."""

    key: str
    dim: int
    channel: torch.Tensor  # (size,) int64
    role: str


@dataclass
class Group:
    """Channels of one coupled width."""

    index: int
    channels: torch.Tensor  # dense channel ids, sorted
    frozen: torch.Tensor  # bool per channel: must be kept
    unit: int  # indices one channel spans in a producer dim (head_dim for heads)
    members: list[Member] = field(default_factory=list)
    mixing: bool = False  # normalised together (LayerNorm / GroupNorm): removal is inexact

    @property
    def size(self) -> int:
        return int(self.channels.numel())


@dataclass
class Analysis:
    """Channels, groups and rules of a traced model."""

    num_channels: int
    members: list[Member]
    groups: list[Group]
    frozen: torch.Tensor  # bool per channel
    head_rules: list[tuple[str, str, torch.Tensor]]  # (module, attr, channel of each head)
    class_channels: dict[str, torch.Tensor]
    outputs: list[torch.Tensor]
    modules: dict[str, torch.nn.Module] = field(default_factory=dict)


def _free_member(key: str, amap: torch.Tensor, dense: torch.Tensor) -> Member | None:
    """A free parameter is prunable along one dim if each slice along it holds one channel."""
    chan = dense[amap.clamp(min=0)].masked_fill(amap < 0, -1)
    if not bool((chan >= 0).any()):
        return None
    best: Member | None = None
    for d in range(chan.dim()):
        per_slice = chan.movedim(d, 0).reshape(chan.size(d), -1)  # (size_d, rest)
        hi = per_slice.amax(1)
        lo = per_slice.masked_fill(per_slice < 0, 1 << 62).amin(1)
        consistent = bool(((hi < 0) | (hi == lo)).all())
        distinct = int(hi[hi >= 0].unique().numel())
        if consistent and (best is None or distinct > int(best.channel.unique().numel()) - 1):
            best = Member(key, d, hi, FREE)
    return best if best is not None else Member(key, -1, chan.reshape(-1), FREE)


def _dense(state: TraceState, dims: Iterable[ParamDim]) -> tuple[torch.Tensor, int]:
    """Map canonical atoms of producer dims to dense channel ids 0..n-1 (lookup table)."""
    roots = [state.atoms.find(d.atoms.reshape(-1)) for d in dims if d.role == OUT]
    produced = torch.cat(roots).unique() if roots else torch.empty(0, dtype=torch.long)
    table = torch.full((state.atoms.count,), -1, dtype=torch.long)
    table[produced] = torch.arange(produced.numel())
    return table, int(produced.numel())


def _lookup(state: TraceState, table: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    roots = state.atoms.find(atoms)
    return table[roots.clamp(min=0)].masked_fill(roots < 0, -1)


def _members(state: TraceState, table: torch.Tensor) -> tuple[list[Member], list[torch.Tensor]]:
    members, pinned = [], []
    for pdim in state.dims.values():
        if pdim.role == FREE:
            member = _free_member(pdim.key, state.atoms.find(pdim.atoms), table)
            if member is None:
                continue
            if member.dim < 0:
                pinned.append(member.channel)
                continue
            members.append(member)
        else:
            members.append(Member(pdim.key, pdim.dim, _lookup(state, table, pdim.atoms), pdim.role))
    return members, pinned


def _frozen(
    state: TraceState, table: torch.Tensor, n: int, pinned: list[torch.Tensor]
) -> torch.Tensor:
    frozen = torch.zeros(n, dtype=torch.bool)
    for atoms in state.frozen:
        chan = _lookup(state, table, atoms)
        frozen[chan[chan >= 0]] = True
    for chan in pinned:
        frozen[chan[chan >= 0]] = True
    return frozen


def _groups(
    members: list[Member], n: int, frozen: torch.Tensor, mixing: torch.Tensor
) -> list[Group]:
    coarse = Atoms(max(n, 1))
    coarse.new(n)
    for m in members:
        if m.role == OUT:
            coarse.union_all(m.channel[m.channel >= 0])
    root = coarse.find(torch.arange(n))
    labels, inverse = root.unique(return_inverse=True)
    groups = [
        Group(i, (inverse == i).nonzero().flatten(), torch.empty(0, dtype=torch.bool), 1)
        for i in range(labels.numel())
    ]
    for g in groups:
        g.frozen = frozen[g.channels]
        g.mixing = bool(mixing[g.channels].any())
    for m in members:
        chan = m.channel[m.channel >= 0]
        if not chan.numel():
            continue
        for gi in inverse[chan].unique().tolist():
            groups[gi].members.append(m)
            if m.role == OUT:
                counts = torch.bincount(chan[inverse[chan] == gi])
                counts = counts[counts > 0]
                unit = int(counts.min())
                groups[gi].unit = unit if groups[gi].unit == 1 else math.gcd(groups[gi].unit, unit)
    return groups


def _head_rules(state: TraceState, table: torch.Tensor) -> list[tuple[str, str, torch.Tensor]]:
    """``(module, attribute, channel of each counted index)`` of every head / width rule.

    A rule without any channel counts nothing and is dropped. An attribute matched by value
    (a width read by a split or a view) whose matches hold different channels is not the
    width of any of them (timm's ``dim`` equal to several widths): its rules are dropped.
    """
    rules = [(h, _lookup(state, table, h.head_atoms)) for h in state.heads]
    rules = [(h, chan) for h, chan in rules if bool((chan >= 0).any())]
    seen: dict[tuple[str, str], torch.Tensor] = {}
    conflicting = set()
    for h, chan in rules:
        key, ordered = (h.module, h.attr), chan.sort().values
        if h.width and key in seen and not torch.equal(seen[key], ordered):
            conflicting.add(key)
        seen.setdefault(key, ordered)
    return [(h.module, h.attr, chan) for h, chan in rules
            if not (h.width and (h.module, h.attr) in conflicting)]


def analyze(
    model: torch.nn.Module, example_inputs: ExampleInputs, ignore: Iterable[IgnoreEntry] = ()
) -> Analysis:
    """Trace ``model`` and return its prunable channels grouped by coupled width.

    Args:
        model: the module to analyse (not modified).
        example_inputs: inputs it accepts.
        ignore: module names, types or compiled regexes whose channels stay untouched.

    Returns:
        An :class:`Analysis`; channels reaching a model output, read by an ignored module
        or by an op that mixes them are marked frozen.
    """
    state, outputs = trace(model, example_inputs, ignore)
    table, n = _dense(state, state.dims.values())
    members, pinned = _members(state, table)
    frozen = _frozen(state, table, n, pinned)
    mixing = torch.zeros(n, dtype=torch.bool)
    for atoms in state.mixing:
        chan = _lookup(state, table, atoms)
        mixing[chan[chan >= 0]] = True
    heads = _head_rules(state, table)
    class_channels = {}
    for cls, atom_list in state.class_atoms.items():
        chan = _lookup(state, table, torch.cat(atom_list))
        class_channels[cls] = chan[chan >= 0].unique()
    groups = _groups(members, n, frozen, mixing)
    return Analysis(n, members, groups, frozen, heads, class_channels, outputs,
                    dict(model.named_modules()))
