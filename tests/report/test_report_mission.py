"""The unstructured-vs-structured table states what this run's figures say, not fixed prose."""

from __future__ import annotations

from typing import Any

import pytest
from report_samples import DENSE_BYTES, document, layers, row

from prunekit.report.mission import mission_table
from prunekit.report.rows import flat_rows

OLD_PROSE = ("small, after fine-tuning", "larger, needs fine-tuning", "adds up",
             "poor: needs sparse kernels", "good: dense kernels get faster",
             "accuracy-critical", "fast inference (mobile, real time)")


def _cells(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """dimension -> family -> cell text."""
    lines = mission_table(flat_rows(data), data["variants"]).split("\n\n")[0].splitlines()
    families = [h.split(" (")[0] for h in lines[0].strip("| ").split(" | ")[1:]]
    table = {}
    for line in lines[2:]:
        dimension, *cells = line.strip("| ").split(" | ")
        table[dimension] = dict(zip(families, cells, strict=True))
    return table


@pytest.fixture
def contradicting() -> dict[str, Any]:
    """Structured loses least accuracy and is slower than dense at batch 1; combined has no
    disk size or latency figures: each contradicts the old fixed prose somewhere."""
    unstructured = row("unstructured-90", "unstructured", accuracy=0.9150, nonzero=71_629,
                       disk=int(0.129 * DENSE_BYTES), b1=1.0, b64=1.01,
                       layer_rows=layers([(32, 32), (64, 64)], [0.62, 0.97]))
    structured = row("structured-50", "structured", accuracy=0.9280, nonzero=174_970,
                     macs=20_200_000, disk=int(0.261 * DENSE_BYTES), b1=0.80, b64=3.40,
                     layer_rows=layers([(16, 32), (32, 64)], [0.0, 0.0]))
    combined = row("combined-50+80", "combined", accuracy=0.9200, nonzero=35_898,
                   macs=20_200_000, disk=None, b1=None, b64=None,
                   layer_rows=layers([(16, 32), (32, 64)], [0.7, 0.85]))
    return document([unstructured, structured, combined])


def test_no_fixed_verdicts_remain(contradicting: dict[str, Any]) -> None:
    text = mission_table(flat_rows(contradicting), contradicting["variants"])
    for phrase in OLD_PROSE:
        assert phrase not in text


def test_accuracy_verdict_follows_the_loss_against_the_control(
        contradicting: dict[str, Any]) -> None:
    cells = _cells(contradicting)["accuracy loss"]
    assert cells["structured"].startswith("-0.09 pt vs control (+0.45 pt vs baseline)")
    assert "least loss of the 3 families" in cells["structured"]
    assert "1.30 pt more loss than structured" in cells["unstructured"]  # -1.39 vs -0.09
    assert "0.80 pt more loss than structured" in cells["combined"]


def test_speed_verdict_follows_each_measured_batch(contradicting: dict[str, Any]) -> None:
    cells = _cells(contradicting)["CPU speed vs dense"]
    assert cells["structured"].startswith("slower than dense at b1; faster than dense at b64")
    assert "b1 0.80x / b64 3.40x" in cells["structured"]
    assert cells["unstructured"].startswith("as fast as dense at b1 and b64")  # within 5%
    assert cells["combined"] == "not measured"


def test_size_and_structure_verdicts(contradicting: dict[str, Any]) -> None:
    cells = _cells(contradicting)
    assert "smallest of the 2 families" in cells["bytes on disk"]["unstructured"]
    assert "2.0x the size of unstructured" in cells["bytes on disk"]["structured"]
    assert cells["bytes on disk"]["combined"] == "not measured"
    assert cells["what is removed"]["structured"].startswith("whole channels: 2/2 layers")
    assert cells["what is removed"]["unstructured"].startswith("single weights")
    assert cells["what is removed"]["combined"].startswith("channels and single weights")
    assert cells["sparsity pattern"]["structured"].startswith("regular")
    assert cells["sparsity pattern"]["unstructured"].startswith("irregular")
    wins = cells["best of this run at"]
    assert "least accuracy loss vs control" in wins["structured"]
    assert "smallest on disk" in wins["unstructured"]


def test_without_a_control_the_loss_against_it_is_not_measured() -> None:
    variant = row("unstructured-90", "unstructured", accuracy=0.92, nonzero=71_629)
    cells = _cells(document([variant], control_accuracy=None))
    assert cells["accuracy loss"]["unstructured"].startswith("vs control: not measured")
    assert cells["accuracy loss"]["structured"] == "not measured"
