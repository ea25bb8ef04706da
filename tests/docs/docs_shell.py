"""Running or checking the commands of the documentation's shell blocks.

Cheap commands run for real: ``prunekit prune`` / ``prunekit inspect`` and any command that
asks for ``--help``, through the CLI application in this process (the same code the console
script runs; exit codes included). Long ones are checked instead: ``prunekit compare``, the
benchmark scripts, ``pytest``, ``mkdocs`` (each flag must appear in ``<command> --help``),
``bash scripts/*.sh`` (the script exists and parses) and ``pip install`` (each extra exists
in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from docs_blocks import ROOT, Command, flag_in_help, flags

PRUNEKIT = ("prunekit", ".venv/bin/prunekit")
PYTHON = ("python", "python3", ".venv/bin/python")
MKDOCS = ("mkdocs", ".venv/bin/mkdocs")
PIP = ("pip", ".venv/bin/pip")
RUN_FOR_REAL = ("prune", "inspect")
WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}


def _leading_words(words: tuple[str, ...]) -> list[str]:
    """The words before the first option (subcommands, scripts, positional paths)."""
    lead: list[str] = []
    for word in words:
        if word.startswith("-"):
            break
        lead.append(word)
    return lead


def prunekit_parts(cmd: Command) -> tuple[list[str], list[str]]:
    """(options before the subcommand, the rest) of a ``prunekit`` command line."""
    args = list(cmd.words[1:])
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1
    return args[:i], args[i:]


def runs_for_real(cmd: Command, flags_only: bool) -> bool:
    """True for the cheap commands the tests execute rather than check."""
    if cmd.words[0] not in PRUNEKIT or flags_only:
        return False
    _, rest = prunekit_parts(cmd)
    return "--help" in cmd.words or (bool(rest) and rest[0] in RUN_FOR_REAL)


@contextlib.contextmanager
def logging_kept() -> Iterator[None]:
    """Undo what the CLI's logging set-up changes (``--verbose`` sets prunekit's level)."""
    root, ours = logging.getLogger(), logging.getLogger("prunekit")
    handlers, root_level, our_level = root.handlers[:], root.level, ours.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        ours.setLevel(our_level)


def run_prunekit(cmd: Command) -> None:
    """Run a ``prunekit`` command in this process (current directory) and check its exit code."""
    from typer.testing import CliRunner

    from prunekit.cli.app import app

    with logging_kept():
        result = CliRunner().invoke(app, list(cmd.words[1:]), env=WIDE)
    assert result.exit_code == cmd.expected_exit, (
        f"{cmd.where}: `{' '.join(cmd.words)}` exited {result.exit_code}, the page says "
        f"{cmd.expected_exit}\n{result.output}\n{result.exception!r}"
    )


@cache
def prunekit_help(subcommand: str | None) -> str:
    """``prunekit [SUBCOMMAND] --help``, run in this process."""
    from typer.testing import CliRunner

    from prunekit.cli.app import app

    args = [subcommand, "--help"] if subcommand else ["--help"]
    result = CliRunner().invoke(app, args, env=WIDE)
    assert result.exit_code == 0, f"prunekit {' '.join(args)} failed:\n{result.output}"
    return result.output


def check_prunekit_flags(cmd: Command) -> None:
    """Every option of a ``prunekit`` command exists where it is given."""
    before, rest = prunekit_parts(cmd)
    assert rest, f"{cmd.where}: `{' '.join(cmd.words)}` names no subcommand"
    for where, words in ((None, before), (rest[0], rest[1:])):
        text = prunekit_help(where)
        missing = [f for f in flags(words) if not flag_in_help(f, text)]
        assert not missing, f"{cmd.where}: prunekit {where or ''} has no option {missing}"


def python_help_args(cmd: Command) -> list[str]:
    """What follows ``python`` to get this command's ``--help`` (checking what it names)."""
    if cmd.words[0] in MKDOCS:
        return ["-m", "mkdocs", *_leading_words(cmd.words[1:]), "--help"]
    args = list(cmd.words[1:])
    if args[:1] == ["-m"]:
        module, lead = args[1], _leading_words(tuple(args[2:]))
        paths = [w for w in lead if "/" in w or w.endswith(".py")]
        for path in paths:
            assert (ROOT / path).exists(), f"{cmd.where}: {path} does not exist"
        return ["-m", module, *[w for w in lead if w not in paths], "--help"]
    script = args[0]
    assert (ROOT / script).is_file(), f"{cmd.where}: {script} does not exist"
    return [script, "--help"]


def python_help_texts(arg_lists: list[list[str]]) -> dict[str, str]:
    """``--help`` texts of Python commands, all in one child process run from the root."""
    unique = sorted({json.dumps(a) for a in arg_lists})
    if not unique:
        return {}
    helper = Path(__file__).with_name("help_texts.py")
    done = subprocess.run(
        [sys.executable, str(helper), json.dumps([json.loads(u) for u in unique])],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, f"help_texts.py failed:\n{done.stderr[-3000:]}"
    return dict(zip(unique, json.loads(done.stdout), strict=True))


def check_python_flags(cmd: Command, help_texts: dict[str, str]) -> None:
    """A Python command's script exists and every flag it uses is in its ``--help``."""
    key = json.dumps(python_help_args(cmd))
    text = help_texts[key]
    assert not text.startswith("exit "), f"{cmd.where}: `{key}` failed:\n{text[:3000]}"
    used = flags(cmd.words[1:])
    if cmd.words[0] in PYTHON and cmd.words[1] == "-m":
        used = flags(cmd.words[3:])
    missing = [f for f in used if not flag_in_help(f, text)]
    assert not missing, f"{cmd.where}: `{' '.join(cmd.words[:3])}` has no option {missing}"


def check_script(cmd: Command) -> None:
    """``bash scripts/x.sh``: the script exists and is valid shell."""
    script = ROOT / cmd.words[1]
    assert script.is_file(), f"{cmd.where}: {cmd.words[1]} does not exist"
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, f"{cmd.where}: {cmd.words[1]} does not parse: {done.stderr}"


def extras() -> set[str]:
    """The optional-dependency groups pyproject.toml defines."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return set(data["project"]["optional-dependencies"])


def check_pip(cmd: Command) -> None:
    """``pip install ...``: every extra named (``.[a,b]``, ``prunekit[a]``) exists."""
    assert cmd.words[1] == "install", f"{cmd.where}: only `pip install` is documented"
    named = [e.strip() for w in cmd.words[2:] for group in re.findall(r"\[([^\]]*)\]", w)
             for e in group.split(",")]
    unknown = sorted(set(named) - extras())
    assert not unknown, f"{cmd.where}: pyproject.toml has no extra {unknown}"


def kind(cmd: Command) -> str:
    """Which check a command gets: prunekit, python, script or pip."""
    program = cmd.words[0]
    if program in PRUNEKIT:
        return "prunekit"
    if program in PYTHON or program in MKDOCS:
        return "python"
    if program == "bash" and len(cmd.words) == 2 and cmd.words[1].endswith(".sh"):
        return "script"
    if program in PIP:
        return "pip"
    raise AssertionError(f"{cmd.where}: the docs tests do not know how to check `{program}`")
