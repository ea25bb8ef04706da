"""Tracing and coupling analysis for structured pruning.

:func:`analyze` runs a model once on example inputs and returns its prunable channels grouped
by coupled width (see :mod:`prunekit.graph.trace` for the method and
``rules_*.py`` for one coupling rule per op kind).
"""

from .groups import Analysis, Group, Member, analyze

__all__ = ["Analysis", "Group", "Member", "analyze"]
