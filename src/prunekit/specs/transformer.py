"""The spec for Hugging Face-aware transformer pruning: heads, MLP neurons, whole layers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from .checks import check_sparsity

TRANSFORMER_IMPORTANCE = ("magnitude", "activation", "taylor")


def _freeze_heads(heads: Any) -> float | tuple[tuple[int, tuple[int, ...]], ...]:
    if isinstance(heads, Mapping):
        frozen = []
        for layer, indices in heads.items():
            if isinstance(layer, bool) or not isinstance(layer, int) or not isinstance(
                indices, Sequence
            ) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
                raise SpecError(
                    f"heads entry {layer!r}: {indices!r} is not a layer index -> head indices",
                    "e.g. heads={0: [1, 5], 3: [0]}",
                )
            frozen.append((layer, tuple(sorted(set(indices)))))
        return tuple(sorted(frozen))
    check_sparsity(heads, "heads")
    return float(heads)


def _freeze_layers(layers: Any) -> int | tuple[int, ...]:
    if isinstance(layers, bool):
        raise SpecError(f"layers must be a count or a list of layer indices, got {layers!r}")
    if isinstance(layers, int):
        if layers < 0:
            raise SpecError(f"layers must be >= 0, got {layers}")
        return layers
    if isinstance(layers, Sequence) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in layers
    ):
        return tuple(sorted(set(layers)))
    raise SpecError(
        f"layers must be a count or a list of layer indices, got {layers!r}",
        "layers=2 removes the 2 least important blocks; layers=[4, 5] removes those blocks",
    )


@dataclass(frozen=True)
class TransformerStructured:
    """Remove attention heads, MLP neurons and whole blocks of a Hugging Face transformer.

    The result is a physically smaller dense model whose module attributes and config are
    updated, so ``forward``, ``generate()`` and saving keep working. Knows BERT, GPT-2 and
    Llama (grouped-query attention included).

    Args:
        heads: fraction of query heads removed in every layer (the same count per layer),
            or ``{layer index: [query head indices]}`` to remove exactly those. With
            grouped-query attention every key/value group loses the same number of query
            heads; a group that loses all its query heads is removed with its key/value head.
        neurons: fraction of MLP intermediate neurons removed in every layer.
        layers: number of whole blocks to remove (the least important), or their indices.
        importance: ``"magnitude"`` (weight norms, no data), ``"activation"`` (output
            norms on calibration batches) or ``"taylor"`` (|weight x gradient| of the
            model's loss on calibration batches that carry labels).
        round_to: kept MLP widths are rounded to a multiple of this.

    Example:
        >>> TransformerStructured(heads=0.25, neurons=0.25).to_dict()["heads"]
        0.25
    """

    heads: Any = 0.0
    neurons: float = 0.0
    layers: Any = 0
    importance: str = "magnitude"
    round_to: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", _freeze_heads(self.heads))
        object.__setattr__(self, "layers", _freeze_layers(self.layers))
        check_sparsity(self.neurons, "neurons")
        if self.importance not in TRANSFORMER_IMPORTANCE:
            raise SpecError(
                f"unknown importance {self.importance!r}",
                f"choose one of: {', '.join(TRANSFORMER_IMPORTANCE)}",
            )
        if isinstance(self.round_to, bool) or not isinstance(self.round_to, int) or (
            self.round_to < 1
        ):
            raise SpecError(f"round_to must be a positive integer, got {self.round_to!r}")
        if self.heads == 0.0 and self.neurons == 0.0 and self.layers in (0, ()):
            raise SpecError(
                "nothing to remove: heads, neurons and layers are all zero",
                "e.g. TransformerStructured(heads=0.25, neurons=0.25)",
            )

    @property
    def explicit_heads(self) -> dict[int, list[int]] | None:
        """``{layer: [head indices]}`` when heads were given explicitly, else None."""
        if isinstance(self.heads, tuple):
            return {layer: list(idx) for layer, idx in self.heads}
        return None

    def to_dict(self) -> dict[str, Any]:
        heads = self.explicit_heads
        return {
            "kind": "transformer_structured",
            "heads": {str(k): v for k, v in heads.items()} if heads is not None else self.heads,
            "neurons": self.neurons,
            "layers": list(self.layers) if isinstance(self.layers, tuple) else self.layers,
            "importance": self.importance,
            "round_to": self.round_to,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransformerStructured:
        """Inverse of :meth:`to_dict`."""
        fields = {k: v for k, v in data.items() if k != "kind"}
        if isinstance(fields.get("heads"), Mapping):
            fields["heads"] = {int(k): v for k, v in fields["heads"].items()}
        return cls(**fields)
