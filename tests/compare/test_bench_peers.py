"""benchmarks/bench_peers.py --quick: peers pruned from compare's baseline, compare's recovery."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prunekit.compare.baseline import shipped_files
from prunekit.data.fashion_mnist import DEFAULT_DIR

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DEFAULT_DIR / "train-images-idx3-ubyte.gz").is_file()
                       or not shipped_files("fmnist_resnet").exists(),
                       reason="needs dataset-fashion-mnist and the shipped checkpoint"),
]


def test_quick_run_prints_one_row_per_method_with_sane_figures(tmp_path: Path) -> None:
    pytest.importorskip("torch_pruning")
    out = tmp_path / "peers.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_peers.py"), "--quick", "--threads", "1",
         "--no-progress", "--variants", "torch-l1-90,tp-l1-50,control", "--json", str(out)],
        capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "device=cpu dtype=float32 threads=1" in result.stdout
    assert "train batch=128" in result.stdout
    report = json.loads(out.read_text())
    assert report["setup"]["recovery"]["lr"] == 0.02 and report["setup"]["recovery"]["seed"] == 0
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["dense", "torch-l1-90", "tp-l1-50", "control"]
    for name in ("method", "torch-l1-90", "tp-l1-50", "control"):
        assert any(line.split()[0] == name for line in result.stdout.splitlines() if line), name
    dense = rows["dense"]
    for row in rows.values():
        assert 0.0 <= row["acc_pruned"] <= 1.0 and 0.0 <= row["acc_finetuned"] <= 1.0
    # torch's global L1 zeroes 90% of conv/linear weights; BatchNorm and biases stay
    unstructured = rows["torch-l1-90"]
    assert unstructured["params"] == dense["params"] and unstructured["macs"] == dense["macs"]
    assert 0.09 * dense["params"] < unstructured["nonzero"] < 0.12 * dense["params"]
    # Torch-Pruning removes half the channels of every group: about a quarter of the weights
    channels = rows["tp-l1-50"]
    assert channels["params"] == channels["nonzero"] < 0.3 * dense["params"]
    assert channels["macs"] < 0.3 * dense["macs"]
    # the control prunes nothing, and fine-tuning keeps it near the baseline
    control = rows["control"]
    assert control["params"] == control["nonzero"] == dense["params"]
    assert abs(control["acc_pruned"] - dense["acc_finetuned"]) <= 0.002  # layout may flip a tie
    assert abs(control["acc_finetuned"] - dense["acc_finetuned"]) < 0.05
