"""The result of depth pruning: a :class:`~prunekit.PruneResult` that says what it measured."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..result import PruneResult


@dataclass
class DepthResult(PruneResult):
    """A :class:`~prunekit.PruneResult` of :class:`~prunekit.specs.Depth`.

    Attributes:
        removed: the blocks replaced by ``nn.Identity``, in the order they were chosen.
        influence: ``{block: relative output change with that block alone removed}`` for
            every removable block, on the calibration batches (empty when the blocks were
            named or chosen without measuring).
        change: relative output change with all of ``removed`` removed, before any channel
            pruning (None when not measured).
        channels: the result of the ``channels=`` step, when the spec has one.
    """

    removed: list[str] = field(default_factory=list)
    influence: dict[str, float] = field(default_factory=dict)
    change: float | None = None
    channels: PruneResult | None = None
