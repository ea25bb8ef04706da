"""Variant names (``unstructured-90`` (global ranking of LAMP scores), ``magnitude-90``
(global magnitude ranking), the calibrated ``wanda-90``
and ``sparsegpt-90`` (``wanda-global-90``, ``sparsegpt-global-90``: per-layer sparsity of
the global ranking), ``nm-2:4``, ``structured-50``, ``combined-50+80``, the budgets
``structured-macs25``, ``structured-params30``, ``structured-lat50``, and the depth variants
``depth-2``, ``depth-greedy2`` and ``depth-last2``) and the pruning recipe each one stands for."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..budget import BudgetTarget, Latency, MACs, Params
from ..errors import SpecError
from ..specs import CALIBRATED_IMPORTANCE, NM, Depth, Spec, Structured, Unstructured

FAMILIES = ("unstructured", "nm", "structured", "combined", "depth")
ALL_VARIANTS = (
    "unstructured-50", "unstructured-80", "unstructured-90", "unstructured-95", "nm-2:4",
    "structured-25", "structured-50", "structured-75", "combined-50+80",
)
DEFAULT_VARIANTS = ("unstructured-90", "structured-50", "combined-50+80")
QUICK_VARIANTS = ("unstructured-90", "nm-2:4", "structured-50", "combined-50+80")
_PATTERNS = {
    "unstructured": re.compile(r"unstructured-(\d+(?:\.\d+)?)"),
    "magnitude": re.compile(r"magnitude-(\d+(?:\.\d+)?)"),
    "calibrated": re.compile(r"(wanda|sparsegpt)(-global)?-(\d+(?:\.\d+)?)"),
    "nm": re.compile(r"nm-(\d+):(\d+)"),
    "structured": re.compile(r"structured-(\d+(?:\.\d+)?)"),
    "combined": re.compile(r"combined-(\d+(?:\.\d+)?)\+(\d+(?:\.\d+)?)"),
}
# budgets: the percentage of the dense model's MACs / parameters / batch-64 latency kept
_BUDGETS = {
    "macs": re.compile(r"structured-macs(\d+(?:\.\d+)?)"),
    "params": re.compile(r"structured-params(\d+(?:\.\d+)?)"),
    "lat": re.compile(r"structured-lat(\d+(?:\.\d+)?)"),
}
# depth: the number of residual blocks removed: the least influential, each measured alone
# (oneshot, the default), chosen greedily by measured influence, or the last ones
_DEPTH = re.compile(r"depth-(last|oneshot|greedy)?(\d+)")
BUDGET_BATCH = 64  # the batch a structured-latNN variant's latency is timed at
NAME_HINT = (
    "variants look like unstructured-90, magnitude-90, wanda-90, sparsegpt-90, "
    "sparsegpt-global-90, nm-2:4, "
    "structured-50 or combined-50+80 (percentages removed), structured-macs25, "
    "structured-params30 or "
    "structured-lat50 (percentages of MACs, parameters or batch-64 latency kept), depth-2, "
    "depth-greedy2 or depth-last2 (residual blocks removed: the least influential measured "
    "once or greedily, or the last), comma-separated, or 'all'"
)


@dataclass(frozen=True)
class Variant:
    """A named pruning recipe: one or more specs applied in order to the dense model.

    Attributes:
        name: the variant's name as given (``structured-50``).
        family: ``unstructured``, ``nm``, ``structured``, ``combined`` or ``depth``.
        specs: specs applied one after the other.
        sparsity: nominal fraction removed (for plots), e.g. 0.9 or 0.5 (for a budget,
            1 - the fraction kept; for depth, 0: the fraction depends on the model).
    """

    name: str
    family: str
    specs: tuple[Spec, ...]
    sparsity: float

    @property
    def structured(self) -> bool:
        return any(isinstance(s, Structured) for s in self.specs)

    @property
    def calibrated(self) -> bool:
        """True if a spec chooses what to remove by measuring on calibration batches."""
        return any(needs_calibration(s) for s in self.specs)


def needs_calibration(spec: Spec) -> bool:
    """True if pruning with ``spec`` reads calibration batches: a measured depth selection,
    or an importance measured on activations or gradients (Wanda, SparseGPT, Taylor, a
    transformer's activation importance); data-free pruning refuses them."""
    if isinstance(spec, Depth):
        return spec.measured
    return getattr(spec, "importance", None) in (*CALIBRATED_IMPORTANCE, "activation")


def _percent(text: str, name: str) -> float:
    value = float(text) / 100.0
    if not 0.0 < value < 1.0:
        raise SpecError(f"variant {name!r}: {text}% is out of range", "use a value in (0, 100)")
    return value


GLOBAL_RANKINGS = {"unstructured": "lamp", "magnitude": "l1"}  # family -> importance


def unstructured_spec(sparsity: float, importance: str = "lamp") -> Unstructured:
    """A global ranking: every layer competes for the kept weights.

    ``importance``: ``"lamp"`` (``unstructured-P``: each weight's ``w^2`` over the sum of
    ``w^2`` of the weights of its layer at least as large, so that layers of any raw weight
    scale compete fairly) or ``"l1"`` (``magnitude-P``, and the second stage of
    ``combined-P+Q``)."""
    return Unstructured(sparsity=sparsity, scope="global", importance=importance)


def calibrated_spec(method: str, sparsity: float, allocation: str = "uniform") -> Unstructured:
    """Wanda or SparseGPT: ``sparsity`` of every Linear and Conv2d weight (each output row
    for Wanda), chosen from activations on calibration batches of the training data.

    ``allocation="global"``: each layer's sparsity is instead its share of a global
    magnitude ranking (what ``magnitude-P`` removes from it); the calibrated score picks
    the weights within the layer."""
    return Unstructured(sparsity=sparsity, importance=method, allocation=allocation)


def structured_spec(sparsity: float) -> Structured:
    """L1 filter pruning, the same fraction of channels in every prunable group."""
    return Structured(sparsity=sparsity, importance="l1", scope="layer")


def budget_spec(kind: str, kept: float) -> Structured:
    """L1 filter pruning to a budget: ``kept`` of the MACs, parameters or batch-64 latency
    (timed with the run's threads)."""
    target: BudgetTarget = (MACs(kept) if kind == "macs" else Params(kept) if kind == "params"
                            else Latency(kept, batch=BUDGET_BATCH))
    return Structured(target=target, importance="l1")


def depth_spec(blocks: int, selection: str = "oneshot") -> Depth:
    """Remove ``blocks`` residual blocks: the least influential on calibration batches of
    the training data (``"oneshot"``: each measured alone; ``"greedy"``: one at a time,
    given those already removed), or the last ones the forward runs (``"last"``)."""
    return Depth(blocks=blocks, selection=selection)


def _depth_variant(text: str, name: str) -> Variant | None:
    match = _DEPTH.fullmatch(text)
    if match is None:
        return None
    blocks = int(match.group(2))
    if blocks < 1:
        raise SpecError(f"variant {name!r}: remove at least one block", "e.g. depth-2")
    return Variant(text, "depth", (depth_spec(blocks, match.group(1) or "oneshot"),), 0.0)


def _budget_variant(text: str, name: str) -> Variant | None:
    for kind, pattern in _BUDGETS.items():
        match = pattern.fullmatch(text)
        if match is not None:
            kept = _percent(match.group(1), name)
            return Variant(text, "structured", (budget_spec(kind, kept),), 1.0 - kept)
    return None


def parse_variant(name: str) -> Variant:
    """Parse one variant name.

    Raises:
        SpecError: the name matches no pattern or a percentage is out of range.
    """
    text = name.strip().lower()
    special = _budget_variant(text, name) or _depth_variant(text, name)
    if special is not None:
        return special
    for family, pattern in _PATTERNS.items():
        match = pattern.fullmatch(text)
        if match is None:
            continue
        if family in GLOBAL_RANKINGS:
            s = _percent(match.group(1), name)
            ranking = unstructured_spec(s, GLOBAL_RANKINGS[family])
            return Variant(text, "unstructured", (ranking,), s)
        if family == "calibrated":
            s = _percent(match.group(3), name)
            allocation = "global" if match.group(2) else "uniform"
            return Variant(text, "unstructured",
                           (calibrated_spec(match.group(1), s, allocation),), s)
        if family == "nm":
            n_keep, m = int(match.group(1)), int(match.group(2))
            spec = NM(n_keep=n_keep, m=m)
            return Variant(text, family, (spec,), spec.sparsity)
        if family == "structured":
            s = _percent(match.group(1), name)
            return Variant(text, family, (structured_spec(s),), s)
        s1, s2 = _percent(match.group(1), name), _percent(match.group(2), name)
        return Variant(text, family, (structured_spec(s1), unstructured_spec(s2, "l1")), s2)
    raise SpecError(f"unknown variant {name!r}", NAME_HINT)


def parse_variants(text: str | None, *, quick: bool = False) -> list[Variant]:
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
            variants.append(parse_variant(name))
        except SpecError as exc:
            problems.append(exc.message)
    if problems:
        raise SpecError("; ".join(problems), NAME_HINT)
    seen = [v.name for v in variants]
    duplicates = sorted({n for n in seen if seen.count(n) > 1})
    if duplicates:
        raise SpecError(f"variants listed twice: {', '.join(duplicates)}", "list each once")
    return variants
