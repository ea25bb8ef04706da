"""The ``prunekit`` Typer application: one command per module, registered here."""

from __future__ import annotations

import logging

import typer

from .compare_cmd import compare_command
from .inspect_cmd import inspect_command
from .prune_cmd import prune_command

app = typer.Typer(
    name="prunekit",
    help="Prune PyTorch models: unstructured, N:M and structured; measured, not guessed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("prune")(prune_command)
app.command("inspect")(inspect_command)
app.command("compare")(compare_command)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING)


def main() -> None:
    """Console-script entry point."""
    app()
