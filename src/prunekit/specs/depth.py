"""The spec that removes whole residual blocks of a network: :class:`Depth`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from .checks import check_choice
from .structured import Structured

DEPTH_SELECTIONS = ("greedy", "oneshot", "last")
AMOUNT_HINT = ("blocks=2 removes the 2 blocks whose removal changes the outputs least; "
               "names=['layer1.1'] removes exactly those blocks")


def _freeze_names(names: Any) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence) or not all(
        isinstance(n, str) and n for n in names
    ):
        raise SpecError(f"names must be a list of module names, got {names!r}", AMOUNT_HINT)
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise SpecError(f"names lists {', '.join(repeated)} more than once", "list each once")
    return tuple(names)


@dataclass(frozen=True)
class Depth:
    """Remove whole residual blocks (``output = input + f(input)``, equal shapes).

    A removed block is replaced by ``nn.Identity``: the rest of the model runs unchanged and
    keeps its module names. Removable are blocks held in an ``nn.Sequential`` whose forward
    adds its input to what its branch computes (torchvision / timm ``BasicBlock`` and
    ``Bottleneck`` without downsampling, inverted residuals, pre-norm transformer blocks),
    that run once on the example inputs with one input tensor and an output of its shape.
    A block that applies an activation after the addition (post-activation ResNets) is
    removed exactly when its input is already non-negative, as after a ReLU.

    Give exactly one of ``blocks`` or ``names``.

    Args:
        blocks: how many blocks to remove. ``selection`` says which.
        names: the blocks to remove, by module name (``"layer1.1"``).
        selection: with ``blocks``: ``"oneshot"`` (default) measures each block alone on
            the calibration batches and removes the least influential; ``"greedy"``
            removes, one at a time, the block whose removal changes the outputs least
            given those already removed; ``"last"`` removes the last removable blocks in the
            order the forward runs them (data-free baseline).
        channels: a :class:`Structured` spec applied to what remains, in the same call.

    Raises:
        SpecError: neither or both of ``blocks`` / ``names``, or a bad value.

    Example:
        >>> Depth(blocks=2).to_dict()["selection"]
        'oneshot'
    """

    blocks: int = 0
    names: tuple[str, ...] = ()
    selection: str = "oneshot"
    channels: Structured | None = None

    def __post_init__(self) -> None:
        if isinstance(self.blocks, bool) or not isinstance(self.blocks, int) or self.blocks < 0:
            raise SpecError(f"blocks must be a positive integer, got {self.blocks!r}",
                            AMOUNT_HINT)
        object.__setattr__(self, "names", _freeze_names(self.names))
        if (self.blocks > 0) == bool(self.names):
            raise SpecError("give exactly one of blocks= or names=", AMOUNT_HINT)
        check_choice(self.selection, DEPTH_SELECTIONS, "selection")
        if self.channels is not None and not isinstance(self.channels, Structured):
            raise SpecError(
                f"channels must be a pk.Structured spec, got {type(self.channels).__name__}",
                "e.g. channels=pk.Structured(sparsity=0.5)",
            )

    @property
    def measured(self) -> bool:
        """True if the blocks are chosen by measuring their influence on calibration data."""
        return self.blocks > 0 and self.selection != "last"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a ``kind`` key (inverse: :meth:`from_dict`)."""
        return {
            "kind": "depth", "blocks": self.blocks, "names": list(self.names),
            "selection": self.selection,
            "channels": None if self.channels is None else self.channels.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Depth:
        """Inverse of :meth:`to_dict`.

        Raises:
            SpecError: unknown fields or bad values.
        """
        values = {k: v for k, v in data.items() if k != "kind"}
        channels = values.get("channels")
        if isinstance(channels, Mapping):
            values["channels"] = Structured.from_dict(channels)
        return cls(**values)
