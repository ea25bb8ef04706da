"""Specs that remove individual weights: :class:`Unstructured` and :class:`NM`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..errors import SpecError
from .checks import as_floats, check_amount, check_choice

Scope = Literal["layer", "global"]
SCOPES = ("layer", "global")
UNSTRUCTURED_IMPORTANCE = ("l1", "l2", "random", "lamp", "wanda", "sparsegpt")
CALIBRATED_IMPORTANCE = ("wanda", "sparsegpt", "taylor")
ALLOCATIONS = ("uniform", "owl", "global")
RECONSTRUCTIONS = ("layer", "dense")


def _check_bias_correction(value: object, importance: str) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"bias_correction must be True or False, got {value!r}")
    if value and importance not in ("wanda", "sparsegpt"):
        raise SpecError(
            f"bias_correction needs calibration data (a calibrated importance), "
            f"got importance={importance!r}",
            "use importance='wanda' or importance='sparsegpt'",
        )


def _check_reconstruct(value: str, importance: str) -> None:
    check_choice(value, RECONSTRUCTIONS, "reconstruct")
    if value == "dense" and importance != "sparsegpt":
        raise SpecError(
            f"reconstruct='dense' updates the kept weights, which only SparseGPT does; "
            f"got importance={importance!r}",
            "use importance='sparsegpt' (or leave reconstruct='layer')",
        )


def _check_ranking(importance: str, scope: str | None) -> None:
    """Refuse LAMP where it ranks like ``"l1"``: within one layer or one N:M group."""
    if importance == "lamp" and scope != "global":
        where = "N:M groups" if scope is None else "scope='layer'"
        raise SpecError(
            f"importance='lamp' needs scope='global', got {where}: it ranks the weights of "
            f"one layer as 'l1' does and only changes how layers are ranked together",
            "use Unstructured(..., scope='global', importance='lamp'), or importance='l1'",
        )


def _fields(spec: Any) -> dict[str, Any]:
    """The spec's fields; ``bias_correction`` and ``reconstruct`` only when not the default
    (plans written before they existed stay identical)."""
    fields = asdict(spec)
    if not fields.get("bias_correction"):
        fields.pop("bias_correction", None)
    if fields.get("reconstruct") == "layer":
        fields.pop("reconstruct", None)
    return fields


@dataclass(frozen=True)
class Unstructured:
    """Remove individual weights.

    Args:
        sparsity: exact fraction of weights removed per layer (``scope="layer"``) or across
            all targeted layers ranked together (``scope="global"``).
        threshold: remove every weight whose score (``|w|`` for l1) is below it.
        scope: ``"layer"`` or ``"global"``.
        importance: ``"l1"``, ``"l2"``, ``"random"``, ``"lamp"`` (``scope="global"`` only:
            each weight's ``w^2`` over the sum of ``w^2`` of the weights of its layer at least
            as large, which makes layers of different weight scale comparable; Lee et al.
            2021), or a calibrated score (``"wanda"``, ``"sparsegpt"``) that needs
            calibration data.
        allocation: how ``sparsity`` is spread over the layers of a calibrated
            (``"wanda"``/``"sparsegpt"``) prune: ``"uniform"`` (every layer the same),
            ``"owl"`` (outlier-weighted: blocks with more activation outliers keep more
            weights; the overall fraction removed stays ``sparsity``) or ``"global"`` (each
            layer loses the share of its weights a global magnitude ranking over all
            targeted layers would remove, as ``scope="global", importance="l1"`` does; the
            calibrated score then picks which weights go within each layer).
        bias_correction: after a calibrated prune, add to each layer's bias the mean output
            shift the pruning caused on the calibration tokens (layers without a bias are
            left as they are).
        reconstruct: what SparseGPT's weight update reproduces, inside the model's repeated
            blocks: ``"layer"`` (each layer's own unpruned output on the inputs the pruned
            model gives it, as in the paper) or ``"dense"`` (the *unpruned model's* output
            of that layer, so each layer also corrects the error of the layers pruned before
            it; worth it with a few hundred calibration sentences or more).

    Example:
        >>> Unstructured(sparsity=0.9, scope="global")
        Unstructured(sparsity=0.9, threshold=None, scope='global', importance='l1',
        allocation='uniform', bias_correction=False, reconstruct='layer')
    """

    sparsity: float | None = None
    threshold: float | None = None
    scope: Scope = "layer"
    importance: str = "l1"
    allocation: str = "uniform"
    bias_correction: bool = False
    reconstruct: str = "layer"

    def __post_init__(self) -> None:
        check_amount(self.sparsity, self.threshold)
        as_floats(self)
        check_choice(self.scope, SCOPES, "scope")
        check_choice(self.importance, UNSTRUCTURED_IMPORTANCE, "importance")
        check_choice(self.allocation, ALLOCATIONS, "allocation")
        if self.allocation != "uniform" and self.importance not in ("wanda", "sparsegpt"):
            raise SpecError(
                f"allocation={self.allocation!r} needs a calibrated importance, "
                f"got {self.importance!r}",
                "use importance='wanda' or importance='sparsegpt'",
            )
        _check_ranking(self.importance, self.scope)
        _check_bias_correction(self.bias_correction, self.importance)
        _check_reconstruct(self.reconstruct, self.importance)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a ``kind`` key (inverse: :func:`spec_from_dict`)."""
        return {"kind": "unstructured", **_fields(self)}


@dataclass(frozen=True)
class NM:
    """Keep ``n_keep`` of every ``m`` consecutive weights along the input dimension.

    ``NM(2, 4)`` is the 2:4 pattern that sparse tensor cores run. ``bias_correction`` and
    ``reconstruct`` are as for :class:`Unstructured` (calibrated importance only).

    Example:
        >>> NM(n_keep=2, m=4).sparsity
        0.5
    """

    n_keep: int = 2
    m: int = 4
    importance: str = "l1"
    bias_correction: bool = False
    reconstruct: str = "layer"

    def __post_init__(self) -> None:
        for name in ("n_keep", "m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{name} must be a positive integer, got {value!r}")
        if self.n_keep > self.m:
            raise SpecError(
                f"n_keep ({self.n_keep}) must not exceed m ({self.m})",
                "NM(n_keep=2, m=4) keeps 2 of every 4 weights",
            )
        check_choice(self.importance, UNSTRUCTURED_IMPORTANCE, "importance")
        _check_ranking(self.importance, None)
        _check_bias_correction(self.bias_correction, self.importance)
        _check_reconstruct(self.reconstruct, self.importance)

    @property
    def sparsity(self) -> float:
        """Fraction of weights removed: ``1 - n_keep / m``."""
        return 1.0 - self.n_keep / self.m

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a ``kind`` key (inverse: :func:`spec_from_dict`)."""
        return {"kind": "nm", **_fields(self)}


