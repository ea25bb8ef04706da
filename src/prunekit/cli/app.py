"""The ``prunekit`` Typer application: one command per module, registered here."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from .compare_cmd import compare_command
from .errors import configure_logging
from .inspect_cmd import inspect_command
from .prune_cmd import prune_command

VERBOSE_FLAGS = ("--verbose", "-v")


class VerboseAnywhere(TyperGroup):
    """Accept ``--verbose`` before or after the subcommand (``prunekit prune ... -v``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click's Context
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in VERBOSE_FLAGS]
        rest = [a for a in args[:end] if a not in VERBOSE_FLAGS] + args[end:]
        return super().parse_args(ctx, flags[:1] + rest)


app = typer.Typer(
    name="prunekit",
    cls=VerboseAnywhere,
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
    configure_logging(verbose)


def main() -> None:
    """Console-script entry point."""
    app()
