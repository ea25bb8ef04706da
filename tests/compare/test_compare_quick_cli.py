"""Integration: ``prunekit compare --quick`` on Fashion-MNIST with the shipped baseline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunekit.cli.app import app
from prunekit.compare.baseline import shipped_files
from prunekit.compare.control import CONTROL_NAME
from prunekit.compare.variants import QUICK_VARIANTS
from prunekit.data.fashion_mnist import DEFAULT_DIR
from prunekit.report import flat_rows

pytestmark = pytest.mark.skipif(
    not (DEFAULT_DIR / "train-images-idx3-ubyte.gz").is_file()
    or not shipped_files("fmnist_resnet").exists(),
    reason="needs dataset-fashion-mnist and the shipped checkpoint",
)
NUMBERS = ("acc_before", "acc_after", "params", "nonzero_params", "macs", "bytes_on_disk",
           "peak_memory_bytes", "b1_ms", "b1_speedup", "b64_ms", "b64_speedup")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quick")
    result = CliRunner().invoke(app, ["compare", "--quick", "--threads", "1", "--no-progress",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_every_variant_is_present_with_numbers(quick_run: Path) -> None:
    data = json.loads((quick_run / "results.json").read_text())
    assert data["baseline"]["source"] == "shipped"
    rows = {r["variant"]: r for r in flat_rows(data)}
    assert set(rows) == {"dense", CONTROL_NAME, *QUICK_VARIANTS}
    for name, row in rows.items():
        assert row["status"] == "done", (name, data["variants"].get(name))
        for key in NUMBERS:
            if name in ("dense", CONTROL_NAME) and key == "acc_before":
                continue
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]), (name, key)


def test_accuracy_and_size_ordering_is_sane(quick_run: Path) -> None:
    rows = {r["variant"]: r for r in flat_rows(json.loads((quick_run / "results.json").read_text()))}
    dense = rows["dense"]
    assert dense["acc_after"] > 0.85  # the shipped baseline, on the 1000-image subset
    for name in QUICK_VARIANTS:
        row = rows[name]
        assert 0.3 < row["acc_after"] <= dense["acc_after"] + 0.02, name  # above chance (0.1)
    # fine-tuning helps the variant that pruning hurts most
    assert rows["structured-50"]["acc_after"] > rows["structured-50"]["acc_before"]
    # sizes: the combined variant is the smallest on disk; structured cuts MACs, masks do not
    assert rows["combined-50+80"]["bytes_on_disk"] < min(
        rows["structured-50"]["bytes_on_disk"], rows["unstructured-90"]["bytes_on_disk"])
    assert rows["structured-50"]["macs"] < 0.5 * dense["macs"]
    assert rows["unstructured-90"]["macs"] == dense["macs"]
    assert rows["unstructured-90"]["nonzero_params"] < 0.12 * dense["nonzero_params"]


def test_report_files_are_written(quick_run: Path) -> None:
    report = (quick_run / "report.md").read_text()
    for name in QUICK_VARIANTS:
        assert f"| {name} |" in report
    assert "## Unstructured vs structured, measured" in report
    for png in ("accuracy_vs_compression.png", "speedup_vs_compression.png", "layers.png"):
        assert (quick_run / png).read_bytes()[:4] == b"\x89PNG"
    assert len((quick_run / "results.csv").read_text().splitlines()) == 1 + 2 + len(QUICK_VARIANTS)


def test_saved_variants_load_back_with_the_measured_accuracy(quick_run: Path) -> None:
    import prunekit.io as pkio
    from prunekit.data import fashion_mnist
    from prunekit.measure import evaluate_accuracy

    data = json.loads((quick_run / "results.json").read_text())
    test = fashion_mnist(train_limit=1, test_limit=1000, seed=0).test
    for name in ("combined-50+80", "structured-50"):
        loaded = pkio.load(quick_run / "models" / name)
        model = getattr(loaded, "model", loaded)
        measured = data["variants"][name]["accuracy"]
        # same weights; memory layout may flip an argmax on a near tie, hence 2 in 1000
        assert abs(evaluate_accuracy(model, test) - measured) <= 0.002, name
