"""Which calibration batches this rank runs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from .group import active, rank, require_process_group, world_size

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """This rank's share of a list of calibration batches: every ``world``-th, from ``rank``.

    Attributes:
        rank: this process's rank.
        world: how many ranks share the batches.
    """

    rank: int
    world: int

    def owns(self, index: int) -> bool:
        """True if batch ``index`` (0-based, of the whole list) is this rank's to run."""
        return index % self.world == self.rank

    def local(self, batches: Sequence[T]) -> list[T]:
        """This rank's batches, in their order."""
        return list(batches[self.rank::self.world])


def calibration_shard(n_batches: int | None, distributed: bool | None = None) -> Shard | None:
    """The share of the batches this rank runs, or None to run them all here.

    Args:
        n_batches: how many batches every rank was given (None: unknown, an iterable).
        distributed: None splits when a process group of 2+ ranks is initialized (see
            :func:`.group.active`); True requires one; False never splits.

    Returns:
        A :class:`Shard`, or None (single process, or fewer batches than ranks: each rank
        then runs them all and the results need no summing).

    Raises:
        SpecError: ``distributed=True`` without a process group.
    """
    if distributed:
        require_process_group("distributed=True")
    if distributed is False or not active():
        return None
    world = world_size()
    if n_batches is not None and n_batches < world:
        log.info("%d calibration batches for %d ranks: every rank runs all of them",
                 n_batches, world)
        return None
    return Shard(rank(), world)
