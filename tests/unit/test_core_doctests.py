"""The examples in the core docstrings run and are right.

The examples of README.md and docs/ are run by tests/docs/test_docs_blocks.py.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

CORE_MODULES = [
    "prunekit",
    "prunekit.api",
    "prunekit.specs.weights",
    "prunekit.specs.transformer",
    "prunekit.plan",
    "prunekit.targets",
    "prunekit.summary",
    "prunekit.apply.masks",
    "prunekit.select.unstructured",
    "prunekit.select.nm",
    "prunekit.importance.weight",
    "prunekit.zoo",
    "prunekit.sparse.formats",
    "prunekit.sparse.modules",
    "prunekit.sparse.convert",
    "prunekit.io.save",
    "prunekit.io.load",
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", CORE_MODULES)
def test_docstring_examples_pass(name: str) -> None:
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert attempted > 0, f"{name} has no example"
    assert failed == 0
