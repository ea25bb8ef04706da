"""Which layers a pruning call touches: types, ignore list, per-layer overrides.

Everything here only reads the model; it validates user input before anything is mutated.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from torch import nn

from .errors import TargetError

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)

IgnoreEntry = str | re.Pattern[str] | type[nn.Module]
"""How ``ignore=`` and ``overrides=`` select modules (see :func:`matches`)."""

# Characters that hint a string was meant as a regex ("." is left out: names have dots).
_REGEX_HINTS = frozenset("\\*+?[](){}|^$")


def qualified_name(prefix: str, name: str) -> str:
    """``"prefix.name"``, or ``name`` under the root module (empty prefix)."""
    return f"{prefix}.{name}" if prefix else name


@dataclass(frozen=True)
class Target:
    """One prunable weight: ``model.get_submodule(module_name).<param>``."""

    module_name: str
    module: nn.Module
    param: str = "weight"
    tied: tuple[str, ...] = ()  # other targeted modules holding the same weight Parameter

    @property
    def key(self) -> str:
        """State-dict style name, e.g. ``"features.0.weight"``."""
        return f"{self.module_name}.{self.param}" if self.module_name else self.param

    @property
    def input_dim(self) -> int:
        """Dimension of the weight indexed by input features / channels."""
        return 0 if isinstance(self.module, nn.modules.conv._ConvTransposeNd) else 1


def matches(entry: IgnoreEntry, name: str, module: nn.Module) -> bool:
    r"""True if an ignore / override entry selects ``module`` named ``name``.

    - a module type matches its instances;
    - a string matches the module of exactly that name and its children (``"features"``
      covers ``"features.3"``, but ``"1.0"`` never covers ``"100"``);
    - a regex is used only when asked for: a compiled ``re.Pattern`` is matched in full
      against the module name (``re.compile(r"blocks\.\d+\.fc1")``).

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> matches("features", "features.3", layer), matches(nn.Linear, "head", layer)
        (True, True)
        >>> matches(re.compile(r"blocks\.\d+\.fc1"), "blocks.11.fc1", layer)
        True
        >>> matches("fc", "fc1", layer), matches("1.0", "100", layer)
        (False, False)
    """
    if isinstance(entry, type):
        return isinstance(module, entry)
    if isinstance(entry, re.Pattern):
        return entry.fullmatch(name) is not None
    return name == entry or name.startswith(entry + ".")


def entry_label(entry: IgnoreEntry) -> str:
    """How an entry is shown in reasons and errors: ``'head'``, ``'Linear'``,
    ``re.compile('blocks\\.\\d+')``."""
    if isinstance(entry, type):
        return repr(entry.__name__)
    if isinstance(entry, re.Pattern):
        return f"re.compile({entry.pattern!r})"
    return repr(entry)


def _unmatched_line(entry: IgnoreEntry, names: list[str]) -> str:
    line = entry_label(entry)
    if isinstance(entry, str):
        close = difflib.get_close_matches(entry, names, n=3)
        if close:
            line += f" (did you mean {', '.join(close)}?)"
        if _REGEX_HINTS & set(entry):
            line += f" (a string is a module name; for a regex pass re.compile({entry!r}))"
    return line


def _check_entries_match(entries: Iterable[IgnoreEntry], model: nn.Module, what: str) -> None:
    named = list(model.named_modules())
    names = [n for n, _ in named if n]
    unmatched = [e for e in entries if not any(matches(e, n, m) for n, m in named)]
    if not unmatched:
        return
    raise TargetError(
        f"{what} entries match no module of the model: "
        + "; ".join(_unmatched_line(e, names) for e in unmatched),
        "use module names as printed by model.named_modules() (a name covers its "
        "children), a module type, or a compiled regex: re.compile(r\"blocks\\.\\d+\\.fc1\")",
    )


def _is_entry(entry: object) -> bool:
    return isinstance(entry, (str, re.Pattern)) or (
        isinstance(entry, type) and issubclass(entry, nn.Module)
    )


def ignore_entries(ignore: Iterable[IgnoreEntry] | IgnoreEntry) -> list[IgnoreEntry]:
    r"""The entries of an ``ignore=`` argument as a list, each checked to be usable.

    A bare string, regex or type is one entry (``ignore="fc"`` means ``["fc"]``, not
    ``["f", "c"]``). Every pruning path normalises ``ignore`` through this function.

    Args:
        ignore: module names, ``nn.Module`` types and compiled regexes, or one of them.

    Returns:
        The entries, in order.

    Raises:
        TargetError: an entry is none of the three (a regex given as a plain string is a
            name, not an error; it fails later if no module has that name).

    Example:
        >>> ignore_entries("fc"), ignore_entries(nn.Embedding)
        (['fc'], [<class 'torch.nn.modules.sparse.Embedding'>])
        >>> ignore_entries(["head", re.compile(r"blocks\.\d+")])
        ['head', re.compile('blocks\\.\\d+')]
    """
    single = isinstance(ignore, (str, re.Pattern, type)) or not isinstance(ignore, Iterable)
    items: Iterable[object] = [ignore] if single else ignore  # type: ignore[assignment]
    entries: list[IgnoreEntry] = []
    for entry in items:
        if not _is_entry(entry):
            raise TargetError(
                f"ignore entry {entry!r} is neither a module name, an nn.Module type nor a "
                "compiled regex",
                'e.g. ignore=["classifier.2", nn.Embedding, re.compile(r"blocks\\.\\d+\\.attn")]',
            )
        entries.append(entry)  # type: ignore[arg-type]
    return entries


def check_ignore(
    model: nn.Module, ignore: Iterable[IgnoreEntry] | IgnoreEntry
) -> list[IgnoreEntry]:
    """:func:`ignore_entries`, and every entry must select some module of ``model``.

    Returns:
        The entries, in order.

    Raises:
        TargetError: an entry is unusable or matches no module (with "did you mean").
    """
    entries = ignore_entries(ignore)
    _check_entries_match(entries, model, "ignore")
    return entries


def _weight_id(module: nn.Module) -> int:
    """Identity of the trainable weight (``weight`` or, once masked, ``weight_orig``)."""
    params = module._parameters
    weight = params["weight"] if "weight" in params else params.get("weight_orig")
    return id(weight if weight is not None else module)


def _holders(model: nn.Module) -> dict[int, list[tuple[str, str]]]:
    """``id(parameter) -> [(module name, attribute)]`` of every module that holds it."""
    holders: dict[int, list[tuple[str, str]]] = {}
    for name, module in model.named_modules():
        for attr, param in module._parameters.items():
            if param is not None:
                holders.setdefault(id(param), []).append((name, attr))
    return holders


def _resolve_ties(
    model: nn.Module, candidates: list[Target], skipped: dict[str, str]
) -> list[Target]:
    """Tied weights get one mask, shared by every targeted holder; others are skipped.

    A weight also held by a module that is not pruned (ignored, an Embedding not asked
    for, a custom module's own parameter) is left alone: masking it would change that
    module too.
    """
    holders = _holders(model)
    names = {t.module_name for t in candidates}
    targets: list[Target] = []
    followers: set[str] = set()
    for t in candidates:
        if t.module_name in followers:
            continue
        others = [(n, a) for n, a in holders.get(_weight_id(t.module), []) if n != t.module_name]
        tied = [n for n, a in others if n in names and a in ("weight", "weight_orig")]
        outside = [f"{n}.{a}" if n else a for n, a in others if n not in tied]
        if outside:
            for name in (t.module_name, *tied):
                skipped[name] = (
                    f"its weight is tied to {', '.join(outside)}, which is not pruned"
                )
            followers.update(tied)
            continue
        followers.update(tied)
        for name in tied:
            skipped[name] = f"tied to {t.module_name!r} (same weight, same mask)"
        targets.append(Target(t.module_name, t.module, tied=tuple(tied)))
    return targets


def resolve_targets(
    model: nn.Module,
    *,
    ignore: Iterable[IgnoreEntry] | IgnoreEntry = (),
    types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES,
    include_embeddings: bool = False,
) -> tuple[list[Target], dict[str, str]]:
    """Find the prunable weights of ``model``.

    Args:
        model: the model (only read).
        ignore: module names (each covers its children), ``nn.Module`` types and compiled
            regexes (``re.compile(...)``, matched in full) to leave alone; see :func:`matches`.
        types: the prunable module types.
        include_embeddings: also target ``nn.Embedding`` weights.

    Returns:
        ``(targets, skipped)``: the weights to prune and ``{module name: reason}`` for
        prunable layers left alone.

    Raises:
        TargetError: an ignore entry matches nothing, or nothing is left to prune.
    """
    entries = check_ignore(model, ignore)
    wanted = types + ((nn.Embedding,) if include_embeddings else ())
    candidates: list[Target] = []
    skipped: dict[str, str] = {}
    for name, module in model.named_modules():
        if not isinstance(module, wanted) or getattr(module, "weight", None) is None:
            continue
        if isinstance(module.weight, nn.parameter.UninitializedParameter):
            raise TargetError(
                f"{name or type(module).__name__} is a lazy module whose weight is not "
                "initialised yet",
                "run one forward pass (e.g. model(example_inputs)) before pruning",
            )
        hit = next((e for e in entries if matches(e, name, module)), None)
        if hit is not None:
            skipped[name] = f"ignored by {entry_label(hit)}"
        else:
            candidates.append(Target(name, module))
    targets = _resolve_ties(model, candidates, skipped)
    if not targets:
        raise TargetError(
            f"no prunable layer found in {type(model).__name__}"
            + (f" ({len(skipped)} ignored)" if skipped else ""),
            f"prunable types are {', '.join(t.__name__ for t in wanted)}; check the ignore list",
        )
    return targets, skipped


def resolve_overrides(
    model: nn.Module,
    targets: list[Target],
    overrides: Mapping[IgnoreEntry, float] | Mapping[str, float] | None,
) -> dict[str, float]:
    r"""Map each override entry onto target keys: ``{target.key: sparsity}``.

    Entries select modules as ``ignore=`` entries do (:func:`matches`): a module name
    (covering its children), an ``nn.Module`` type, or a compiled regex such as
    ``re.compile(r"blocks\.\d+\.fc1")``. The last matching entry wins, so put general
    entries first and specific ones last.

    Raises:
        SpecError: a sparsity is out of range.
        TargetError: an entry is unusable, matches no module, or matches no pruned layer.
    """
    if not overrides:
        return {}
    from .specs import check_sparsity

    for pattern, sparsity in overrides.items():
        if not _is_entry(pattern):
            raise TargetError(
                f"override key {pattern!r} is neither a module name, an nn.Module type nor "
                "a compiled regex",
                'e.g. overrides={"features.0": 0.5, re.compile(r"blocks\\.\\d+\\.fc1"): 0.8}',
            )
        check_sparsity(sparsity, f"override sparsity for {entry_label(pattern)}")
    _check_entries_match(list(overrides), model, "override")
    resolved: dict[str, float] = {}
    used: set[IgnoreEntry] = set()
    for target in targets:
        for pattern, sparsity in overrides.items():
            if matches(pattern, target.module_name, target.module):
                resolved[target.key] = float(sparsity)
                used.add(pattern)
    unused = [p for p in overrides if p not in used]
    if unused:
        raise TargetError(
            f"override entries match no pruned layer: {', '.join(map(entry_label, unused))}",
            "overrides apply to targeted layers (not ignored, of a prunable type); "
            "check the names against the summary's layer column",
        )
    return resolved
