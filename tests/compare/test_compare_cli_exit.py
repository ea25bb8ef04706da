"""``prunekit compare`` exit codes: 1 when a variant failed (after reporting the others),
2 before anything starts when a needed package is missing or --out holds other results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunekit.cli.app import app

TINY = ("--model", "mlp", "--dataset", "compare_factories:loaders", "--quick", "--threads", "1",
        "--no-progress")


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["compare", *args])
    return result.exit_code, result.output


def test_a_failed_variant_exits_1_naming_it_after_reporting_the_others(tmp_path: Path) -> None:
    # nm-2:5 cannot prune the MLP (no layer's input width is a multiple of 5)
    code, out = _run(*TINY, "--variants", "unstructured-80,nm-2:5", "--no-plots",
                     "--out", str(tmp_path))
    assert code == 1, out
    assert "check failed" in out and "nm-2:5" in out
    assert "unstructured-80" not in out.split("check failed")[1]  # only the failure is named
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["variants"]["unstructured-80"]["status"] == "done"
    assert data["variants"]["nm-2:5"]["status"] == "failed"
    report = (tmp_path / "report.md").read_text()
    assert "| unstructured-80 |" in report and "nm-2:5: failed" in report


def test_all_variants_done_exits_0(tmp_path: Path) -> None:
    code, out = _run(*TINY, "--variants", "unstructured-80", "--no-plots", "--out", str(tmp_path))
    assert code == 0, out


def test_missing_matplotlib_stops_before_anything_runs(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out = _run(*TINY, "--variants", "unstructured-80", "--out", str(tmp_path))
    assert code == 2, out
    assert "matplotlib" in out and 'pip install "prunekit[report]"' in out
    assert "--no-plots" in out
    assert not (tmp_path / "results.json").exists()  # nothing was trained or written

    code, out = _run(*TINY, "--variants", "unstructured-80", "--no-plots", "--out",
                     str(tmp_path))
    assert code == 0, out
    assert "not drawn (--no-plots)" in (tmp_path / "report.md").read_text()
    assert not list(tmp_path.glob("*.png"))


def test_results_from_other_settings_are_refused_with_the_fix(tmp_path: Path) -> None:
    old = {"schema": 1, "settings": {"model": "mlp", "seed": 7},
           "dense": {"name": "dense", "status": "done", "accuracy": 0.5},
           "variants": {"structured-50": {"name": "structured-50", "status": "done"}}}
    (tmp_path / "results.json").write_text(json.dumps(old))
    code, out = _run(*TINY, "--variants", "unstructured-80", "--out", str(tmp_path))
    assert code == 2, out
    assert "other settings" in out and "seed: 7 -> 0" in out
    assert "--fresh" in out and "structured-50" in out
    assert json.loads((tmp_path / "results.json").read_text()) == old
