"""Typed errors. Each names what was wrong and how to fix it.

An error about the caller's input derives from :class:`PrunekitError`; most also derive from
the builtin a caller would expect (``ValueError`` / ``TypeError``), so ``except ValueError``
keeps working. A failure of prunekit's own code is an :class:`InternalError` instead, so a
bug is never presented as the caller's mistake.
"""

from __future__ import annotations


class _Hinted(Exception):
    """An error with a one-line ``message`` and an optional ``hint`` saying what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\nhint: {hint}")


class PrunekitError(_Hinted):
    """Base class of every error about the caller's input: bad model, spec, data or file.

    Raised before the model is changed (or with it restored): fix the input and retry.
    """


BUG_HINT = "this is a prunekit bug; please report it with the model and the call"


class InternalError(_Hinted, RuntimeError):
    """A failure of prunekit's own code, not of the caller's input: please report it.

    The model passed in is left as it was (a copy was pruned, or the in-place changes were
    undone). The original exception is chained as ``__cause__``.
    """


class PruningBrokeModelError(InternalError):
    """The model ran on the example inputs before pruning, but fails (or returns outputs of
    other shapes) after: prunekit produced a broken model and undid it."""


class SpecError(PrunekitError, ValueError):
    """A pruning spec has invalid values (sparsity out of range, n_keep > m, ...)."""


class TargetError(PrunekitError, ValueError):
    """Layer selection is wrong: an ignore entry matches nothing, no prunable layer, ..."""


class ShapeError(PrunekitError, ValueError):
    """A tensor's shape does not fit the requested pattern (e.g. N:M group size)."""


class WeightError(PrunekitError, ValueError):
    """Weights are unusable (NaN / inf)."""


class ExampleInputError(PrunekitError, ValueError):
    """The example inputs do not run through the model."""


class UnsupportedModelError(PrunekitError, TypeError):
    """The model contains an op or module prunekit cannot handle safely."""


class CouplingError(PrunekitError, ValueError):
    """Coupled layers cannot be pruned consistently (structured pruning)."""


class PlanError(PrunekitError, ValueError):
    """A plan is malformed or does not match the model it is applied to."""


class CalibrationError(PrunekitError, ValueError):
    """A method needs calibration data that is missing or unusable."""


class FormatError(PrunekitError, ValueError):
    """A saved artefact (manifest, weights) is corrupt, truncated or from a newer version."""


class ArtifactExistsError(PrunekitError, FileExistsError):
    """The output path exists and overwriting was not asked for."""


class DataError(PrunekitError, ValueError):
    """A dataset is missing or its files are corrupt."""


class MissingDependencyError(PrunekitError, ImportError):
    """An optional package that the requested call needs is not installed."""
