"""Per-layer summary of a pruning result: shapes, parameters, nonzeros, sparsity."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .apply.masks import effective_weight

ROOT = "(root)"  # how tables show the model itself when it is the pruned layer


@dataclass(frozen=True)
class LayerRow:
    """One prunable layer before and after pruning."""

    name: str
    kind: str
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    numel_before: int
    numel_after: int
    nonzero: int
    status: str

    @property
    def sparsity(self) -> float:
        """Fraction of the original weight removed (structurally or by zeros)."""
        return 1.0 - self.nonzero / self.numel_before if self.numel_before else 0.0


@dataclass(frozen=True)
class LayerInfo:
    """What a layer looked like before pruning."""

    kind: str
    shape: tuple[int, ...]


def layer_infos(model: nn.Module, names: list[str]) -> dict[str, LayerInfo]:
    """Record the weight shape of the named layers (before pruning)."""
    infos = {}
    for name in names:
        module = model.get_submodule(name)
        infos[name] = LayerInfo(type(module).__name__, tuple(effective_weight(module).shape))
    return infos


def count_parameters(model: nn.Module) -> int:
    """Total parameters (a masked weight counts once: its ``_orig``; masks are buffers)."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class Summary:
    """Per-layer table and totals. ``str(summary)`` is a readable text table.

    Example:
        >>> import prunekit as pk
        >>> model = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.Linear(10, 2))
        >>> summary = pk.prune(model, pk.Unstructured(sparsity=0.5), ignore=["1"]).summary()
        >>> print(summary)
        layer type   shape    nonzero sparsity  status
        ----------------------------------------------
        0     Linear 10x10         50   50.00%  pruned
        1     Linear 2x10          20    0.00%  skipped: ignored by '1'
        total: 132 -> 132 parameters; 50.00% of targeted weights removed
        >>> summary.targeted_numel, summary.targeted_nonzero
        (100, 50)
    """

    rows: list[LayerRow]
    params_before: int
    params_after: int

    @property
    def targeted_numel(self) -> int:
        """Weights in all pruned layers (before pruning)."""
        return sum(r.numel_before for r in self.rows if r.status.startswith("pruned"))

    @property
    def targeted_nonzero(self) -> int:
        """Nonzero weights left in all pruned layers."""
        return sum(r.nonzero for r in self.rows if r.status.startswith("pruned"))

    @property
    def sparsity(self) -> float:
        """Fraction of the targeted weights removed, over all pruned layers."""
        numel = self.targeted_numel
        return 1.0 - self.targeted_nonzero / numel if numel else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``layers`` (one dict per row) and the totals."""
        rows = [
            {
                **asdict(r),
                "shape_before": list(r.shape_before),
                "shape_after": list(r.shape_after),
                "sparsity": r.sparsity,
            }
            for r in self.rows
        ]
        return {
            "layers": rows,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "targeted_numel": self.targeted_numel,
            "targeted_nonzero": self.targeted_nonzero,
            "sparsity": self.sparsity,
        }

    def __str__(self) -> str:
        shapes = [_shape_text(r) for r in self.rows]
        w_name = max([len("layer"), *(len(r.name or ROOT) for r in self.rows)])
        w_kind = max([len("type"), *(len(r.kind) for r in self.rows)])
        w_shape = max([len("shape"), *(len(s) for s in shapes)])
        header = (
            f"{'layer':<{w_name}} {'type':<{w_kind}} {'shape':<{w_shape}} "
            f"{'nonzero':>10} {'sparsity':>8}  status"
        )
        lines = [header, "-" * len(header)]
        for r, shape in zip(self.rows, shapes, strict=True):
            lines.append(
                f"{r.name or ROOT:<{w_name}} {r.kind:<{w_kind}} {shape:<{w_shape}} {r.nonzero:>10} "
                f"{r.sparsity:>8.2%}  {r.status}"
            )
        if self.rows:
            removed = f"{self.sparsity:.2%} of targeted weights removed"
        else:  # whole blocks removed, no layer targeted
            gone = 1 - self.params_after / max(self.params_before, 1)
            removed = f"{gone:.2%} of parameters removed"
        lines.append(f"total: {self.params_before} -> {self.params_after} parameters; {removed}")
        if self.targeted_numel and self.targeted_nonzero == self.targeted_numel:
            lines.append("note: no weight was removed (nothing below the threshold, or sparsity 0)")
        return "\n".join(lines)


def _shape_text(row: LayerRow) -> str:
    shape = "x".join(map(str, row.shape_after))
    if row.shape_after != row.shape_before:
        shape = "x".join(map(str, row.shape_before)) + "->" + shape
    return shape


def _status(
    name: str, skipped: dict[str, str], notes: dict[str, str], weight: torch.Tensor,
    info: LayerInfo,
) -> str:
    if name in skipped:
        return f"skipped: {skipped[name]}"
    status = "pruned"
    if tuple(weight.shape) == info.shape and int(torch.count_nonzero(weight)) == weight.numel():
        status = "pruned: nothing removed"
    return f"{status} ({notes[name]})" if name in notes else status


def summarize(
    before: dict[str, LayerInfo],
    params_before: int,
    model: nn.Module,
    skipped: dict[str, str],
    notes: dict[str, str] | None = None,
) -> Summary:
    """Build the summary of ``model`` (after pruning) against the layers recorded before.

    Args:
        before: weight shape and kind of every listed layer before pruning.
        params_before: parameter count before pruning.
        model: the pruned model.
        skipped: ``{layer: reason}`` of layers left alone.
        notes: ``{layer: caveat}`` shown beside pruned layers.

    Returns:
        The :class:`Summary` (exact counts of nonzero weights).
    """
    rows = []
    for name, info in before.items():
        weight = effective_weight(model.get_submodule(name))
        rows.append(
            LayerRow(
                name=name,
                kind=info.kind,
                shape_before=info.shape,
                shape_after=tuple(weight.shape),
                numel_before=int(torch.Size(info.shape).numel()),
                numel_after=weight.numel(),
                nonzero=int(torch.count_nonzero(weight)),
                status=_status(name, skipped, notes or {}, weight, info),
            )
        )
    return Summary(rows, params_before, count_parameters(model))
