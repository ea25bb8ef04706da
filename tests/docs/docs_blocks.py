"""Fenced code blocks of the documentation pages, and the commands inside shell blocks.

A page is README.md or any docs/*.md. Every fenced block is either ``python`` (run as code, or
checked as a doctest when it starts with ``>>>``) or ``bash`` (one command a line; ``\\`` joins
lines, ``&&`` chains commands, ``# ...`` is a comment). An HTML comment on the line before a
fence marks the block:

- ``<!-- docs-test: flags-only -->``: its commands are checked (script exists, every flag is
  known), not run: for commands that need the reader's own files;
- ``<!-- docs-test: slow -->``: it runs only in the page's slow test (``-m slow``), so later
  blocks of the page must not need what it defines.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ("python", "bash")
MARKER = re.compile(r"^<!-- docs-test: (?P<names>[\w, -]+) -->$")
KNOWN_MARKERS = frozenset({"flags-only", "slow"})
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
EXIT_COMMENT = re.compile(r"#.*\bexit (?:code )?(?P<code>\d+)\b")
UNSUPPORTED_SHELL = ("|", "||", ";", ">", ">>", "<", "&")


@dataclass(frozen=True)
class Block:
    """One fenced block: its page, first code line (1-based), language and text."""

    page: str
    line: int
    lang: str
    code: str
    markers: frozenset[str] = frozenset()

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def flags_only(self) -> bool:
        return "flags-only" in self.markers

    @property
    def slow(self) -> bool:
        return "slow" in self.markers

    @property
    def is_doctest(self) -> bool:
        return self.lang == "python" and self.code.lstrip().startswith(">>>")


@dataclass(frozen=True)
class Command:
    """One shell command: its words and the exit code the page promises (0 unless said)."""

    words: tuple[str, ...]
    expected_exit: int
    where: str


def pages() -> list[Path]:
    """README.md and every page under docs/, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def page_name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _dedent(lines: list[str], indent: str) -> str:
    return "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                     for line in lines) + "\n"


def _markers(path: Path, lines: list[str], fence: int) -> frozenset[str]:
    """The ``docs-test`` markers on the line right before the fence at ``fence``."""
    previous = lines[fence - 1].strip() if fence > 0 else ""
    match = MARKER.match(previous)
    if match is None:
        return frozenset()
    names = frozenset(n.strip() for n in match["names"].split(","))
    unknown = sorted(names - KNOWN_MARKERS)
    assert not unknown, f"{page_name(path)}:{fence}: unknown docs-test marker {unknown}"
    return names


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, in page order.

    Raises:
        AssertionError: a fence is never closed.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, start = match["indent"], i + 1
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"{page_name(path)}:{i + 1}: unclosed code fence"
        found.append(Block(page_name(path), start + 1, match["lang"],
                           _dedent(lines[start:end], indent), _markers(path, lines, i)))
        i = end + 1
    return found


def _logical_lines(code: str) -> list[tuple[int, str]]:
    """(offset, line) pairs with backslash continuations joined."""
    joined: list[tuple[int, str]] = []
    pending, first = "", 0
    for offset, line in enumerate(code.splitlines()):
        if not pending:
            first = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((first, pending + line))
        pending = ""
    if pending:
        joined.append((first, pending))
    return joined


def commands(block: Block) -> list[Command]:
    """The commands of a shell block, ``&&`` chains split, comments dropped.

    A trailing comment such as ``# exit 2`` states the exit code the command must give.

    Raises:
        AssertionError: the block uses shell syntax the tests do not model (pipes, ``;``,
            redirections, background jobs).
    """
    found: list[Command] = []
    for offset, line in _logical_lines(block.code):
        where = f"{block.page}:{block.line + offset}"
        words = shlex.split(line, comments=True)
        if not words:
            continue
        exit_match = EXIT_COMMENT.search(line)
        expected = int(exit_match["code"]) if exit_match else 0
        bad = [w for w in words if w in UNSUPPORTED_SHELL]
        assert not bad, f"{where}: shell syntax {bad} is not supported in documented commands"
        chain: list[str] = []
        for word in [*words, "&&"]:
            if word != "&&":
                chain.append(word)
                continue
            assert chain, f"{where}: empty command in an && chain"
            found.append(Command(tuple(chain), expected, where))
            chain = []
    return found


def flags(words: tuple[str, ...] | list[str]) -> list[str]:
    """The option names a command uses (``--out=x`` gives ``--out``; values are skipped)."""
    return [w.split("=", 1)[0] for w in words if re.match(r"^--?[A-Za-z][\w-]*(=|$)", w)]


def flag_in_help(flag: str, help_text: str) -> bool:
    """True if ``flag`` appears as a whole option name in ``help_text``."""
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None
