"""A vectorised union-find over integer "atoms" (one atom = one slice of one tensor dim).

Atoms are created in blocks (:meth:`Atoms.new`); :meth:`Atoms.union` merges two equally
shaped (or broadcastable) id tensors element by element; :meth:`Atoms.find` maps ids to
their canonical representative. All operations work on whole tensors at once.
"""

from __future__ import annotations

import torch

NO_ATOM = -1  # marks a tensor element that belongs to no prunable channel


class Atoms:
    """Growable union-find with path compression; ids are int64 tensors."""

    def __init__(self, capacity: int = 1024) -> None:
        self._parent = torch.arange(capacity, dtype=torch.long)
        self.count = 0

    def new(self, n: int) -> torch.Tensor:
        """Create ``n`` fresh atoms; return their ids ``(n,)``."""
        needed = self.count + n
        if needed > self._parent.numel():
            size = max(needed, 2 * self._parent.numel())
            grown = torch.arange(size, dtype=torch.long)
            grown[: self.count] = self._parent[: self.count]
            self._parent = grown
        ids = torch.arange(self.count, needed, dtype=torch.long)
        self.count = needed
        return ids

    def find(self, ids: torch.Tensor) -> torch.Tensor:
        """Canonical id of every element (``NO_ATOM`` stays ``NO_ATOM``).

        Pointer jumping over the queried ids only, then path compression of those ids: the
        cost follows the query, not the number of atoms.
        """
        if ids.numel() == 0:
            return ids
        flat = ids.clamp(min=0)
        roots = self._parent[flat]
        while True:
            up = self._parent[roots]
            if torch.equal(up, roots):
                break
            roots = up
        self._parent[flat] = roots  # every written value is that index's own root
        return torch.where(ids >= 0, roots, ids)

    def union(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Merge ``a[i]`` with ``b[i]`` for every position where both are atoms."""
        a, b = torch.broadcast_tensors(a, b)
        keep = (a >= 0) & (b >= 0)
        a, b = a[keep], b[keep]
        while a.numel():
            ra, rb = self.find(a), self.find(b)
            differ = ra != rb
            if not bool(differ.any()):
                return
            ra, rb = ra[differ], rb[differ]
            lo, hi = torch.minimum(ra, rb), torch.maximum(ra, rb)
            self._parent[hi] = lo  # conflicting writes are fine: the loop repeats
            a, b = ra, rb

    def union_all(self, ids: torch.Tensor) -> None:
        """Merge every atom of ``ids`` into one."""
        flat = ids[ids >= 0]
        if flat.numel() > 1:
            self.union(flat[:1].expand(flat.numel() - 1), flat[1:])
