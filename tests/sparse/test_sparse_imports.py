"""The modules of prunekit.sparse form layers: none imports, directly or through others,
a module that imports it back (function-local imports included: that is where cycles
hide)."""

from __future__ import annotations

import ast
from pathlib import Path

import prunekit.sparse

PACKAGE = Path(prunekit.sparse.__file__).parent


def _local_imports(path: Path, modules: set[str]) -> set[str]:
    """The sibling modules ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import kernels
                found.update(alias.name for alias in node.names)
    return found & modules


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt):], nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_sparse_modules_import_without_cycles():
    files = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {name: _local_imports(path, set(files)) for name, path in files.items()}
    assert "validate" in graph["decode"]  # decode validates what it decodes...
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])  # ...never the reverse
