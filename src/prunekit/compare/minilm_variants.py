"""Variant names of the sentence-encoder comparison and the pruning recipe of each.

- ``magnitude-P``, ``wanda-P``, ``sparsegpt-P``: P% of the weights of every encoder Linear
  layer (unstructured; the pooler, unused by the embeddings, is left alone);
- ``magnitude-N:M``, ``wanda-N:M``, ``sparsegpt-N:M``: N of every M weights kept;
- ``heads-P``, ``neurons-P``: P% of the attention heads / MLP neurons of every block
  (:class:`prunekit.TransformerStructured`, ranked by activations on the calibration text);
  ``structured-P``: both; ``layers-K``: the K least useful whole blocks;
- ``combined-P+Q``: ``structured-P``, then Wanda Q% of what remains.
"""

from __future__ import annotations

import re

from ..errors import SpecError
from ..specs import NM, TransformerStructured, Unstructured
from .variants import Variant

METHODS = {"magnitude": "l1", "wanda": "wanda", "sparsegpt": "sparsegpt"}
DEFAULT_VARIANTS = (
    "magnitude-50", "wanda-50", "sparsegpt-50", "sparsegpt-2:4",
    "structured-25", "layers-1", "combined-25+50",
)
QUICK_VARIANTS = ("magnitude-50", "structured-25", "combined-25+50")
ALL_VARIANTS = (
    "magnitude-50", "wanda-50", "sparsegpt-50", "magnitude-2:4", "wanda-2:4", "sparsegpt-2:4",
    "heads-25", "neurons-50", "structured-25", "layers-1", "layers-2", "combined-25+50",
)
ENCODER_BLOCKS = 6  # all-MiniLM-L6-v2's blocks: layers-K's nominal fraction removed
_NUMBER = r"(\d+(?:\.\d+)?)"
_PATTERNS = {
    "unstructured": re.compile(rf"(magnitude|wanda|sparsegpt)-{_NUMBER}"),
    "nm": re.compile(r"(magnitude|wanda|sparsegpt)-(\d+):(\d+)"),
    "structured": re.compile(rf"(heads|neurons|structured)-{_NUMBER}"),
    "layers": re.compile(r"layers-(\d+)"),
    "combined": re.compile(rf"combined-{_NUMBER}\+{_NUMBER}"),
}
NAME_HINT = (
    "minilm variants look like magnitude-50, wanda-50, sparsegpt-50, sparsegpt-2:4, "
    "heads-25, neurons-50, structured-25, layers-1 or combined-25+50 (percentages removed; "
    "layers-K removes K blocks), comma-separated, or 'all'"
)


def _percent(text: str, name: str) -> float:
    value = float(text) / 100.0
    if not 0.0 < value < 1.0:
        raise SpecError(f"variant {name!r}: {text}% is out of range", "use a value in (0, 100)")
    return value


def _structured(kind: str, fraction: float) -> TransformerStructured:
    heads = fraction if kind in ("heads", "structured") else 0.0
    neurons = fraction if kind in ("neurons", "structured") else 0.0
    return TransformerStructured(heads=heads, neurons=neurons, importance="activation")


def _sparse(method: str, fraction: float) -> Unstructured:
    return Unstructured(sparsity=fraction, importance=METHODS[method])


def _parse(text: str, name: str) -> Variant | None:
    for family, pattern in _PATTERNS.items():
        match = pattern.fullmatch(text)
        if match is None:
            continue
        groups = match.groups()
        if family == "unstructured":
            s = _percent(groups[1], name)
            return Variant(text, family, (_sparse(groups[0], s),), s)
        if family == "nm":
            spec = NM(n_keep=int(groups[1]), m=int(groups[2]), importance=METHODS[groups[0]])
            return Variant(text, family, (spec,), spec.sparsity)
        if family == "structured":
            s = _percent(groups[1], name)
            return Variant(text, family, (_structured(groups[0], s),), s)
        if family == "layers":
            count = int(groups[0])
            if count < 1:
                raise SpecError(f"variant {name!r} removes no block", "use layers-1 or more")
            blocks = TransformerStructured(layers=count, importance="activation")
            return Variant(text, "structured", (blocks,), min(1.0, count / ENCODER_BLOCKS))
        s1, s2 = _percent(groups[0], name), _percent(groups[1], name)
        return Variant(text, family, (_structured("structured", s1), _sparse("wanda", s2)), s2)
    return None


def parse_minilm_variant(name: str) -> Variant:
    """Parse one variant name of the sentence-encoder comparison.

    Raises:
        SpecError: the name matches no pattern, or a number is out of range.
    """
    text = name.strip().lower()
    variant = _parse(text, name)
    if variant is None:
        raise SpecError(f"unknown minilm variant {name!r}", NAME_HINT)
    return variant


def parse_minilm_variants(text: str | None, *, quick: bool = False) -> list[Variant]:
    """Parse a comma-separated list (``all``, or empty for the default set).

    Raises:
        SpecError: naming every bad entry at once, or a duplicate.
    """
    if text is None or not text.strip():
        names = list(QUICK_VARIANTS if quick else DEFAULT_VARIANTS)
    elif text.strip().lower() == "all":
        names = list(ALL_VARIANTS)
    else:
        names = [n for n in (part.strip() for part in text.split(",")) if n]
    variants, problems = [], []
    for name in names:
        try:
            variants.append(parse_minilm_variant(name))
        except SpecError as exc:
            problems.append(exc.message)
    if problems:
        raise SpecError("; ".join(problems), NAME_HINT)
    seen = [v.name for v in variants]
    duplicates = sorted({n for n in seen if seen.count(n) > 1})
    if duplicates:
        raise SpecError(f"variants listed twice: {', '.join(duplicates)}", "list each once")
    return variants
