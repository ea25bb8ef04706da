"""Pruning specs: frozen dataclasses, validated on construction.

Names carry meaning: ``sparsity`` is the fraction removed (``density = 1 - sparsity``);
``NM(n_keep, m)`` keeps ``n_keep`` of every ``m`` consecutive weights.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .errors import SpecError

Scope = Literal["layer", "global"]
SCOPES = ("layer", "global")
UNSTRUCTURED_IMPORTANCE = ("l1", "l2", "random", "wanda", "sparsegpt")
STRUCTURED_IMPORTANCE = ("l1", "l2", "bn_scale", "taylor", "random")
CALIBRATED_IMPORTANCE = ("wanda", "sparsegpt", "taylor")
ALLOCATIONS = ("uniform", "owl")
RECONSTRUCTIONS = ("layer", "dense")


def check_sparsity(sparsity: float, what: str = "sparsity") -> None:
    """Raise SpecError unless ``0 <= sparsity < 1``."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise SpecError(f"{what} must be a number, got {sparsity!r}", "use a float such as 0.5")
    if not (math.isfinite(sparsity) and 0.0 <= sparsity < 1.0):
        raise SpecError(
            f"{what} must be in [0, 1), got {sparsity!r}",
            "sparsity is the fraction removed: 0.9 removes 90% and keeps 10%",
        )


def _check_amount(sparsity: float | None, threshold: float | None) -> None:
    if (sparsity is None) == (threshold is None):
        raise SpecError(
            "give exactly one of sparsity= or threshold=",
            "sparsity=0.9 removes a fraction; threshold=0.05 removes everything scored below 0.05",
        )
    if sparsity is not None:
        check_sparsity(sparsity)
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not math.isfinite(threshold)
        or threshold < 0
    ):
        raise SpecError(f"threshold must be a finite number >= 0, got {threshold!r}")


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
    _check_choice(value, RECONSTRUCTIONS, "reconstruct")
    if value == "dense" and importance != "sparsegpt":
        raise SpecError(
            f"reconstruct='dense' updates the kept weights, which only SparseGPT does; "
            f"got importance={importance!r}",
            "use importance='sparsegpt' (or leave reconstruct='layer')",
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


def _as_floats(spec: object) -> None:
    """Store numpy / int amounts as plain floats (JSON-friendly, equal-comparable)."""
    for name in ("sparsity", "threshold"):
        value = getattr(spec, name)
        if value is not None:
            object.__setattr__(spec, name, float(value))


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise SpecError(f"unknown {what} {value!r}", f"choose one of: {', '.join(choices)}")


@dataclass(frozen=True)
class Unstructured:
    """Remove individual weights.

    Args:
        sparsity: exact fraction of weights removed per layer (``scope="layer"``) or across
            all targeted layers ranked together (``scope="global"``).
        threshold: remove every weight whose score (``|w|`` for l1) is below it.
        scope: ``"layer"`` or ``"global"``.
        importance: ``"l1"``, ``"l2"``, ``"random"``, or a calibrated score
            (``"wanda"``, ``"sparsegpt"``) that needs calibration data.
        allocation: how ``sparsity`` is spread over the layers of a calibrated
            (``"wanda"``/``"sparsegpt"``) prune: ``"uniform"`` (every layer the same) or
            ``"owl"`` (outlier-weighted: blocks with more activation outliers keep more
            weights; the overall fraction removed stays ``sparsity``).
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
        _check_amount(self.sparsity, self.threshold)
        _as_floats(self)
        _check_choice(self.scope, SCOPES, "scope")
        _check_choice(self.importance, UNSTRUCTURED_IMPORTANCE, "importance")
        _check_choice(self.allocation, ALLOCATIONS, "allocation")
        if self.allocation != "uniform" and self.importance not in ("wanda", "sparsegpt"):
            raise SpecError(
                f"allocation={self.allocation!r} needs a calibrated importance, "
                f"got {self.importance!r}",
                "use importance='wanda' or importance='sparsegpt'",
            )
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
        _check_choice(self.importance, UNSTRUCTURED_IMPORTANCE, "importance")
        _check_bias_correction(self.bias_correction, self.importance)
        _check_reconstruct(self.reconstruct, self.importance)

    @property
    def sparsity(self) -> float:
        """Fraction of weights removed: ``1 - n_keep / m``."""
        return 1.0 - self.n_keep / self.m

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a ``kind`` key (inverse: :func:`spec_from_dict`)."""
        return {"kind": "nm", **_fields(self)}


@dataclass(frozen=True)
class Structured:
    """Remove whole channels / filters / heads / neurons, giving a smaller dense model.

    Args:
        sparsity: fraction of channels removed in each prunable group (``scope="layer"``)
            or ranked across groups (``scope="global"``).
        threshold: remove every channel whose importance is below it.
        importance: ``"l1"``, ``"l2"``, ``"bn_scale"``, ``"taylor"`` or ``"random"``.
        scope: ``"layer"`` or ``"global"``.
        round_to: kept widths are rounded to a multiple of this (hardware-friendly widths).
        min_channels: never keep fewer channels than this in any group.
    """

    sparsity: float | None = None
    threshold: float | None = None
    importance: str = "l1"
    scope: Scope = "layer"
    round_to: int = 1
    min_channels: int = 1

    def __post_init__(self) -> None:
        _check_amount(self.sparsity, self.threshold)
        _as_floats(self)
        _check_choice(self.scope, SCOPES, "scope")
        _check_choice(self.importance, STRUCTURED_IMPORTANCE, "importance")
        for name in ("round_to", "min_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a ``kind`` key (inverse: :func:`spec_from_dict`)."""
        return {"kind": "structured", **asdict(self)}


Spec = Unstructured | NM | Structured
_SPEC_KINDS: dict[str, type] = {"unstructured": Unstructured, "nm": NM, "structured": Structured}


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Rebuild a spec from :meth:`to_dict` output (validates again)."""
    fields = dict(data)
    kind = fields.pop("kind", None)
    if kind == "transformer_structured":
        from .hf.spec import TransformerStructured  # defined beside its Hugging Face code

        try:
            return TransformerStructured.from_dict(fields)  # type: ignore[return-value]
        except TypeError as exc:
            raise SpecError(f"bad fields for a {kind} spec: {exc}") from exc
    if kind not in _SPEC_KINDS:
        raise SpecError(f"unknown spec kind {kind!r}", f"expected one of {sorted(_SPEC_KINDS)}")
    try:
        spec: Spec = _SPEC_KINDS[kind](**fields)
    except TypeError as exc:
        raise SpecError(f"bad fields for a {kind} spec: {exc}") from exc
    return spec
