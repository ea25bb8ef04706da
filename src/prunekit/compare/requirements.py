"""Optional packages a comparison run needs, checked before anything starts.

A run that would need a missing package stops at once with a typed error naming it and
the install command, instead of failing minutes later after the training it did.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import MissingDependencyError
from .settings import CompareSettings


@dataclass(frozen=True)
class Requirement:
    """One optional package and why the run needs it.

    Attributes:
        module: the import name (``matplotlib``).
        extra: the prunekit extra that installs it (``report``).
        needed_for: what needs it, in words.
        avoid: how to run without it, if there is a way (a flag).
    """

    module: str
    extra: str
    needed_for: str
    avoid: str | None = None


def requirements(settings: CompareSettings, *, plots: bool) -> list[Requirement]:
    """The optional packages a run with these settings will import.

    Args:
        settings: the run's settings (``torchvision:`` models need torchvision).
        plots: the run will draw the PNG plots (matplotlib).

    Returns:
        The requirements, in the order they are checked.
    """
    needed = []
    if plots:
        needed.append(Requirement("matplotlib", "report", "the PNG plots", "--no-plots"))
    if settings.model_ref.startswith("torchvision:"):
        needed.append(Requirement("torchvision", "vision", f"--model {settings.model_ref}"))
    return needed


def importable(module: str) -> bool:
    """True if ``module`` imports."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def check_requirements(settings: CompareSettings, *, plots: bool) -> None:
    """Raise if a package the run needs is missing (call before any work starts).

    Args:
        settings: the run's settings.
        plots: the run will draw the PNG plots.

    Raises:
        MissingDependencyError: naming each missing package, what needs it and the
            ``pip install "prunekit[...]"`` command (and the flag that avoids it, if any).
    """
    missing = [r for r in requirements(settings, plots=plots) if not importable(r.module)]
    if not missing:
        return
    names = "; ".join(f"{r.module} (for {r.needed_for})" for r in missing)
    extras = ",".join(dict.fromkeys(r.extra for r in missing))
    hint = f'pip install "prunekit[{extras}]"'
    avoid = [f"{r.avoid} to run without {r.module}" for r in missing if r.avoid]
    if avoid:
        hint += ", or pass " + ", ".join(avoid)
    raise MissingDependencyError(f"missing optional package: {names}", hint)
