"""One mapping from failures to exit codes, and the ``error: ... / hint: ...`` format.

Exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 3 internal error.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import BUG_HINT, InternalError, PrunekitError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3

F = TypeVar("F", bound=Callable[..., Any])
err_console = Console(stderr=True)


class CheckFailed(Exception):
    """A command ran but a check it performs failed (exit code 1)."""


def report_failures(func: F) -> F:
    """Turn exceptions into one-line messages and the documented exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except CheckFailed as exc:
            err_console.print(f"[red]check failed:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(EXIT_CHECK_FAILED) from exc
        except PrunekitError as exc:
            err_console.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False)
            if exc.hint:
                err_console.print(f"[yellow]hint:[/yellow] {escape(exc.hint)}", highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from exc
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - last resort: report, never a bare traceback
            _report_internal(exc)
            raise typer.Exit(EXIT_INTERNAL) from exc

    return wrapper  # type: ignore[return-value]


def configure_logging(verbose: bool) -> None:
    """Warnings always on stderr; prunekit's debug messages (and tracebacks) with --verbose."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("prunekit").setLevel(logging.DEBUG if verbose else logging.NOTSET)


def _verbose() -> bool:
    return logging.getLogger("prunekit").isEnabledFor(logging.DEBUG)


def _report_internal(exc: Exception) -> None:
    """A failure of prunekit itself: say so, ask for a report, traceback under --verbose."""
    if _verbose():
        err_console.print("".join(traceback.format_exception(exc)), markup=False,
                          highlight=False)
    message, hint = f"{type(exc).__name__}: {exc}", BUG_HINT
    if isinstance(exc, InternalError):
        message, hint = exc.message, exc.hint or hint
    err_console.print(f"[red]internal error:[/red] {escape(message)}", highlight=False)
    err_console.print(f"[yellow]hint:[/yellow] {escape(hint)}", highlight=False)
    if not _verbose():
        err_console.print("rerun with --verbose to print the traceback for the report")
