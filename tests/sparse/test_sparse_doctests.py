"""The examples in the sparse / io docstrings and in README's saving section run and are right."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

MODULES = [
    "prunekit.sparse.formats",
    "prunekit.sparse.modules",
    "prunekit.sparse.convert",
    "prunekit.io.save",
    "prunekit.io.load",
]
README = Path(__file__).resolve().parents[2] / "README.md"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_pass(name: str) -> None:
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    assert attempted > 0, f"{name} has no example"
    assert failed == 0


def test_readme_saving_section_examples_pass() -> None:
    text = README.read_text(encoding="utf-8")
    title = "Saving, loading and sparse inference"
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    test = doctest.DocTestParser().get_doctest(match.group(1), {}, "README", str(README), 0)
    assert len(test.examples) >= 8
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    assert runner.failures == 0
