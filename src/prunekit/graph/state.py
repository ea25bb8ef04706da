"""What the trace records: per-tensor atom maps, parameter dims, frozen atoms, head rules.

An *atom map* of a traced tensor is an int64 tensor of the same number of dims, broadcastable
to the tensor's shape, giving for each element the atom (prunable channel slice) it belongs
to, or ``NO_ATOM``. A *parameter dim* gives the atom of every index of one dim of one
parameter or buffer. Coupling rules union atoms; the connected atoms form one channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UnsupportedModelError
from .unionfind import NO_ATOM, Atoms

OUT, IN, NORM, BIAS, FREE = "out", "in", "norm", "bias", "free"


@dataclass
class ParamDim:
    """One dim of a parameter/buffer: the atom of each index and the tensor's role there."""

    key: str  # state-dict name, e.g. "layer1.0.conv1.weight"
    dim: int
    atoms: torch.Tensor  # (size,) or, for FREE tensors, the full-shape map
    role: str  # OUT (producer filters), IN (consumer), NORM, BIAS, FREE (free parameter)


@dataclass
class HeadRule:
    """Module attribute counting heads: its new value is the number of heads kept."""

    module: str
    attr: str
    head_atoms: torch.Tensor  # (num_heads,) one atom per head
    width: bool = False  # a width attribute matched by value (dropped when matches disagree)


@dataclass
class TraceState:
    """Everything the coupling rules read and write while the model runs."""

    model: nn.Module
    atoms: Atoms = field(default_factory=Atoms)
    maps: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)  # id(param or buffer) -> key
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # key -> param or buffer
    dims: dict[tuple[str, int], ParamDim] = field(default_factory=dict)
    frozen: list[torch.Tensor] = field(default_factory=list)
    output_atoms: list[torch.Tensor] = field(default_factory=list)
    mixing: list[torch.Tensor] = field(default_factory=list)  # atoms normalised together
    heads: list[HeadRule] = field(default_factory=list)
    stack: list[tuple[str, nn.Module]] = field(default_factory=list)
    class_atoms: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, tensor in [*self.model.named_parameters(), *self.model.named_buffers()]:
            self.names.setdefault(id(tensor), key)
            self.tensors.setdefault(key, tensor)

    # --- context -------------------------------------------------------------------------
    @property
    def where(self) -> str:
        """Path of the innermost module running, for messages."""
        return self.stack[-1][0] if self.stack and self.stack[-1][0] else "<model>"

    def unsupported(self, what: str) -> UnsupportedModelError:
        return UnsupportedModelError(
            f"{what} in module {self.where!r} touches prunable channels and prunekit has no "
            "rule for it",
            f"pass ignore=[{self.where!r}] to leave that module (and the channels it touches) "
            "unpruned",
        )

    # --- maps ----------------------------------------------------------------------------
    def peek(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """Canonical atom map of ``tensor`` if it has one (never creates one)."""
        entry = self.maps.get(id(tensor))
        return None if entry is None else self.atoms.find(entry[1])

    def map_of(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """Atom map of ``tensor`` (canonical ids), creating one for a free parameter."""
        entry = self.maps.get(id(tensor))
        if entry is not None:
            return self.atoms.find(entry[1])
        key = self.names.get(id(tensor))
        if key is None or not tensor.is_floating_point():
            return None
        ids = self.atoms.new(tensor.numel()).view(tensor.shape)
        self.dims[(key, -1)] = ParamDim(key, -1, ids, FREE)
        self.maps[id(tensor)] = (tensor, ids)
        return ids

    def set_map(self, tensor: torch.Tensor, amap: torch.Tensor | None) -> None:
        if amap is None or not bool((amap >= 0).any()):
            self.maps.pop(id(tensor), None)
            return
        self.maps[id(tensor)] = (tensor, compress(amap))
        self.note_inputs([amap])

    def note_inputs(self, maps: list[torch.Tensor]) -> None:
        """Remember the atoms read or written inside each running module class (for retries)."""
        if not self.stack or not maps:
            return
        atoms = torch.cat([m.reshape(-1) for m in maps]).unique()
        for cls in {type(module).__name__ for _, module in self.stack}:
            self.class_atoms.setdefault(cls, []).append(atoms)

    def map_of_rep(self, amap: torch.Tensor) -> torch.Tensor:
        """One atom per position of the leading dims (the last two dims reduced)."""
        return self.atoms.find(amap.select(-1, 0).select(-1, 0))

    def unite(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Union element-wise; an atom facing ``NO_ATOM`` (an unprunable slice) is pinned."""
        a, b = torch.broadcast_tensors(a, b)
        self.freeze(b[(a < 0) & (b >= 0)])
        self.freeze(a[(b < 0) & (a >= 0)])
        self.atoms.union(a, b)

    def freeze(self, amap: torch.Tensor | None) -> None:
        if amap is not None:
            self.frozen.append(amap.reshape(-1))

    # --- parameter dims ------------------------------------------------------------------
    def param_key(self, tensor: torch.Tensor | None) -> str | None:
        return None if tensor is None else self.names.get(id(tensor))

    def pdim(self, tensor: torch.Tensor, dim: int, role: str) -> torch.Tensor:
        """Atoms of every index of ``tensor``'s dim ``dim`` (created once per tensor dim)."""
        key = self.names[id(tensor)]
        entry = self.dims.get((key, dim))
        if entry is None:
            entry = ParamDim(key, dim, self.atoms.new(tensor.shape[dim]), role)
            self.dims[(key, dim)] = entry
        elif role == OUT:
            entry.role = OUT
        return entry.atoms


# --- helpers on maps -----------------------------------------------------------------------
def varies(amap: torch.Tensor, dim: int) -> bool:
    """True if the map holds two different atoms along ``dim`` (``NO_ATOM`` ignored)."""
    if amap.size(dim) <= 1:
        return False
    hi = amap.amax(dim)
    lo = amap.masked_fill(amap < 0, 1 << 62).amin(dim)
    return bool(((hi >= 0) & (lo != hi)).any())


def compress(amap: torch.Tensor) -> torch.Tensor:
    """Shrink every dim along which the map is constant (``NO_ATOM`` included) to size 1."""
    for d in range(amap.dim()):
        if amap.size(d) > 1 and bool((amap.amax(d) == amap.amin(d)).all()):
            amap = amap.narrow(d, 0, 1)
    return amap


def rows(amap: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Distinct rows ``(R, size)`` of the map along ``dim`` (all other dims flattened)."""
    shape = list(amap.shape)
    shape[dim] = size
    moved = amap.expand(shape).movedim(dim, -1).reshape(-1, size)
    return moved.unique(dim=0) if moved.size(0) > 1 else moved


def along(amap: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    """Place a 1-D atom vector at ``dim`` of an ``ndim``-dim map (size 1 elsewhere)."""
    shape = [1] * ndim
    shape[dim] = amap.numel()
    return amap.view(shape)


def empty_map(shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    return torch.full(tuple(shape), NO_ATOM, dtype=torch.long)
