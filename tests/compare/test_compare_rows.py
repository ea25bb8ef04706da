"""The report's dense row shows the dense latency timed beside the variants."""

from __future__ import annotations

from prunekit.report.rows import flat_rows


def _latency(median: float, dense_median: float) -> dict[str, dict[str, float]]:
    entry = {"median_ms": median, "iqr_ms": 0.1, "dense_median_ms": dense_median,
             "dense_iqr_ms": 0.2, "speedup": dense_median / median}
    return {"b1": entry, "b64": {**entry, "median_ms": 10 * median,
                                 "dense_median_ms": 10 * dense_median}}


def test_dense_row_uses_the_interleaved_dense_timings_not_its_own_noisy_session() -> None:
    noisy_session = _latency(600.0, 600.0)  # a burst of load during the dense-only session
    data = {
        "dense": {"name": "dense", "accuracy": 0.9, "latency_cpu": noisy_session},
        "variants": {
            "a": {"name": "a", "accuracy": 0.89, "latency_cpu": _latency(1.0, 2.0)},
            "b": {"name": "b", "accuracy": 0.88, "latency_cpu": _latency(1.5, 3.0)},
            "c": {"name": "c", "accuracy": 0.87, "latency_cpu": _latency(1.2, 2.5)},
        },
        "requested": ["a", "b", "c"],
    }
    dense_row = flat_rows(data)[0]
    assert dense_row["variant"] == "dense"
    assert dense_row["b1_ms"] == 2.5 and dense_row["b64_ms"] == 25.0
    assert dense_row["b1_iqr_ms"] == 0.2
    assert [r["b1_speedup"] for r in flat_rows(data)[1:]] == [2.0, 2.0, 2.5 / 1.2]
