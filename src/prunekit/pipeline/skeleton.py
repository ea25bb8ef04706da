"""One skeleton for every call that changes a model.

validate everything -> copy (or, with ``inplace=True``, snapshot) -> mutate -> verify ->
result. A failure after the first mutation restores an in-place model bit-identically (see
:mod:`.snapshot`); a copy is simply dropped. Errors are classified on the way out:

- a :class:`~prunekit.errors.PrunekitError` is about the caller's input and passes through;
- anything else raised by prunekit's own code becomes an
  :class:`~prunekit.errors.InternalError` ("please report"), the original chained as its
  cause, so a bug is never presented as the user's mistake.

Each kind of pruning is a :class:`Pipeline`; it never repeats this sequence itself.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

from torch import nn

from ..errors import BUG_HINT, InternalError, PrunekitError, UnsupportedModelError
from .snapshot import ModelSnapshot

R_co = TypeVar("R_co", covariant=True)


class Pipeline(Protocol[R_co]):
    """The four steps one kind of pruning supplies; :func:`run` owns the order and safety.

    A pipeline object serves one call: :meth:`prepare` keeps what it decided on ``self``.
    """

    name: str  # what the user asked for, for messages: "structured pruning", "to_sparse"

    def prepare(self, model: nn.Module) -> None:
        """Validate every input and decide what to change; must not mutate ``model``."""

    def writes(self) -> Iterable[str]:
        """Names of modules whose own tensors :meth:`mutate` writes in place (snapshot copies)."""

    def mutate(self, work: nn.Module) -> None:
        """Change ``work`` (the model itself with ``inplace=True``, else a copy)."""

    def verify(self, work: nn.Module) -> None:
        """Check the changed model (it runs, output shapes kept); raise if not."""

    def result(self, work: nn.Module) -> R_co:
        """What the entry point returns."""


@contextlib.contextmanager
def internal_errors(what: str, stage: str) -> Iterator[None]:
    """Re-raise anything that is not already classified as an :class:`InternalError`."""
    try:
        yield
    except (PrunekitError, InternalError):
        raise
    except Exception as exc:  # noqa: BLE001 - classified here, once for every pipeline
        raise InternalError(
            f"{what} failed while {stage}: {type(exc).__name__}: {exc}",
            f"{BUG_HINT}; the model was left unchanged",
        ) from exc


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)``, with a typed error for models that cannot be copied.

    Raises:
        UnsupportedModelError: the model holds something deepcopy refuses (a lock, a file).
    """
    try:
        return copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - whatever the user's module holds
        raise UnsupportedModelError(
            f"cannot copy {type(model).__name__}: {type(exc).__name__}: {exc}",
            "pass inplace=True to change the model itself instead of a copy",
        ) from exc


def run(pipeline: Pipeline[R_co], model: nn.Module, *, inplace: bool) -> R_co:
    """Run ``pipeline`` on ``model`` (or a copy of it) with the promises above.

    Raises:
        PrunekitError: bad input, before anything changed (or with the change undone).
        InternalError: a prunekit failure; an in-place model is restored first.
    """
    with internal_errors(pipeline.name, "validating its inputs"):
        pipeline.prepare(model)
        writes = list(pipeline.writes())
    work = model if inplace else copy_model(model)
    snapshot = ModelSnapshot(model, writes) if inplace else None
    try:
        with internal_errors(pipeline.name, "changing the model"):
            pipeline.mutate(work)
        with internal_errors(pipeline.name, "checking the changed model"):
            pipeline.verify(work)
            return pipeline.result(work)
    except BaseException:
        if snapshot is not None:
            snapshot.restore()
        raise
