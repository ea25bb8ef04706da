"""The typed error an integration raises when its framework is not installed."""

from __future__ import annotations

from ..errors import MissingDependencyError


def missing_dependency(package: str, needed_for: str, extra: str) -> MissingDependencyError:
    """The error to raise (``from`` the ImportError) when ``package`` cannot be imported.

    Args:
        package: the missing distribution, e.g. ``"lightning"``.
        needed_for: what needs it, e.g. ``"prunekit.integrations.lightning"``.
        extra: the prunekit extra that installs it.

    Returns:
        A :class:`~prunekit.MissingDependencyError` (also an ``ImportError``) naming the
        package and the ``pip install`` command.
    """
    return MissingDependencyError(
        f"{needed_for} needs the {package} package, which is not installed",
        f'pip install "prunekit[{extra}]" (or pip install {package})',
    )
