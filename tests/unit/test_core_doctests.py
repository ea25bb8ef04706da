"""The examples in the core docstrings and in README's pruning section run and are right."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

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
README = Path(__file__).resolve().parents[2] / "README.md"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", CORE_MODULES)
def test_docstring_examples_pass(name: str) -> None:
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert attempted > 0, f"{name} has no example"
    assert failed == 0


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


@pytest.mark.parametrize(
    ("title", "min_examples"),
    [("Unstructured and N:M pruning", 10), ("Saving, loading and sparse inference", 8)],
)
def test_readme_section_examples_pass(title: str, min_examples: int) -> None:
    section = readme_section(title)
    test = doctest.DocTestParser().get_doctest(section, {}, "README", str(README), 0)
    assert len(test.examples) >= min_examples
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    assert runner.failures == 0
