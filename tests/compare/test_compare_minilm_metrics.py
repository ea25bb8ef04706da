"""The sentence encoder's quality metrics: Spearman's rank correlation against its definition,
the dense encoder's cosine to itself, and how the report names the text task's figures."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from rich.console import Console
from test_compare_minilm_tiny import tiny_task

from prunekit.compare.minilm_eval import Evaluator, spearman
from prunekit.report import render_terminal
from prunekit.report.rows import COLUMNS, columns
from prunekit.report.task import IMAGE, task_view


def test_spearman_of_monotone_and_reversed_orders() -> None:
    x = [0.1, 0.5, 0.2, 0.9, 0.3]
    assert spearman(x, [v ** 3 for v in x]) == pytest.approx(1.0, abs=1e-12)
    assert spearman(x, [-v for v in x]) == pytest.approx(-1.0, abs=1e-12)


def test_spearman_gives_ties_their_average_rank() -> None:
    # ranks of x: 1, 2.5, 2.5, 4; of y: 1, 2, 3, 4 -> Pearson of the ranks
    x, y = [1.0, 2.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0]
    rx, ry = torch.tensor([1, 2.5, 2.5, 4], dtype=torch.float64), torch.arange(1.0, 5.0)
    expected = float(torch.corrcoef(torch.stack([rx, ry.double()]))[0, 1])
    assert spearman(x, y) == pytest.approx(expected, abs=1e-12)


def test_spearman_matches_scipy_on_data_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    x = [float(rng.randint(0, 9)) for _ in range(200)]
    y = [v + rng.gauss(0, 3) for v in x]
    assert spearman(x, y) == pytest.approx(float(stats.spearmanr(x, y)[0]), abs=1e-10)


def test_spearman_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="equal length"):
        spearman([1.0, 2.0], [1.0])


def test_the_dense_encoder_has_cosine_one_and_finite_correlations() -> None:
    task = tiny_task()
    dense = task.build()
    evaluator = Evaluator(task.tokenizer, dense, task.data, max_length=32, document_length=64)
    metrics = evaluator(dense)
    assert metrics["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert set(metrics) == {"cosine", "lee50", "ws353", "simlex"}
    assert all(-1.0 <= metrics[k] <= 1.0 for k in ("lee50", "ws353", "simlex"))


def test_text_task_columns_name_cosine_spearman_and_its_batches() -> None:
    view = task_view({"task": {"name": "minilm", "primary": "cosine", "batches": [1, 32],
                               "metrics": {"cosine": "cos vs dense", "lee50": "Lee-50 ρ"}}})
    names = [view.column(k) for k in columns(view)]
    assert names[3:8] == ["cos_before", "cos_after", "delta_cos", "delta_control_cos", "lee50"]
    assert "b32_speedup" in names and not any(n.startswith("b64") for n in names)
    assert view.delta(0.95, 0.99) == pytest.approx(-0.04)
    assert columns(IMAGE) == COLUMNS and task_view({}) == IMAGE
    assert IMAGE.delta(0.9, 0.92) == pytest.approx(-2.0)


def _text_row(name: str, family: str, cosine: float, speedup: float) -> dict[str, Any]:
    latency = {b: {"median_ms": ms / speedup, "iqr_ms": 0.1, "dense_median_ms": ms,
                   "dense_iqr_ms": 0.1, "speedup": speedup}
               for b, ms in (("b1", 9.0), ("b32", 150.0))}
    return {"name": name, "family": family, "status": "done", "cosine": cosine,
            "cosine_before": cosine - 0.1, "lee50": 0.5, "ws353": -0.72, "simlex": 0.44,
            "params": 22_713_216, "nonzero_params": 17_000_000, "macs": 1e9,
            "disk": {"bytes": 70_000_000}, "memory": {"peak_bytes": 1e8},
            "latency_cpu": latency, "layers": []}


def test_the_text_terminal_table_keeps_every_name_whole_at_80_columns() -> None:
    names = ["dense+recovery", "combined-25+50", "sparsegpt-2:4", "structured-25"]
    variants = {n: _text_row(n, "combined", 0.7123, 123.4) for n in names[1:]}
    data = {"task": {"name": "minilm", "primary": "cosine", "batches": [1, 32],
                     "metrics": {"cosine": "cos vs dense", "lee50": "Lee-50 ρ",
                                 "ws353": "WS-353 ρ", "simlex": "SimLex ρ"}},
            "dense": _text_row("dense", "dense", 1.0, 1.0),
            "control": _text_row("dense+recovery", "control", 0.9944, 12.34),
            "variants": variants, "requested": names[1:]}
    console = Console(width=80, record=True)
    render_terminal(data, console)
    text = console.export_text()
    for name in names:
        assert name in text, name
    assert "123x" in text and "12.3x" in text  # large speedups fit 5 characters
