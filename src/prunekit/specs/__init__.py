"""Pruning specs: frozen dataclasses, validated on construction.

Names carry meaning: ``sparsity`` is the fraction removed (``density = 1 - sparsity``);
``NM(n_keep, m)`` keeps ``n_keep`` of every ``m`` consecutive weights.
"""

from __future__ import annotations

from typing import Any

from ..errors import SpecError
from .checks import check_sparsity
from .depth import DEPTH_SELECTIONS, Depth
from .structured import STRUCTURED_IMPORTANCE, Structured
from .transformer import TRANSFORMER_IMPORTANCE, TransformerStructured
from .weights import CALIBRATED_IMPORTANCE, NM, UNSTRUCTURED_IMPORTANCE, Scope, Unstructured

Spec = Unstructured | NM | Structured | TransformerStructured | Depth
_SPEC_KINDS: dict[str, Any] = {
    "unstructured": Unstructured, "nm": NM, "structured": Structured.from_dict,
    "transformer_structured": TransformerStructured.from_dict, "depth": Depth.from_dict,
}

__all__ = [
    "CALIBRATED_IMPORTANCE", "DEPTH_SELECTIONS", "Depth", "NM", "STRUCTURED_IMPORTANCE", "Scope",
    "Spec", "Structured", "TRANSFORMER_IMPORTANCE", "TransformerStructured",
    "UNSTRUCTURED_IMPORTANCE", "Unstructured", "check_sparsity", "spec_from_dict",
]


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Rebuild a spec from :meth:`to_dict` output (validates again)."""
    fields = dict(data)
    kind = fields.pop("kind", None)
    if kind not in _SPEC_KINDS:
        raise SpecError(f"unknown spec kind {kind!r}", f"expected one of {sorted(_SPEC_KINDS)}")
    try:
        spec: Spec = _SPEC_KINDS[kind](**fields) if isinstance(_SPEC_KINDS[kind], type) else (
            _SPEC_KINDS[kind](fields))
    except TypeError as exc:
        raise SpecError(f"bad fields for a {kind} spec: {exc}") from exc
    return spec
