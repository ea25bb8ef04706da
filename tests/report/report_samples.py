"""Synthetic results documents for the report tests (figures chosen by each test)."""

from __future__ import annotations

from typing import Any

DENSE_PARAMS, DENSE_MACS, DENSE_BYTES = 696_042, 80_500_000, 2_810_000
DENSE_B1_MS, DENSE_B64_MS = 2.0, 40.0


def layers(widths: list[tuple[int, int]], sparsities: list[float]) -> list[dict[str, Any]]:
    """Per-layer rows: (width, dense width) and weight sparsity for each layer."""
    return [{"name": f"layer{i}", "width": w, "dense_width": d, "sparsity": s}
            for i, ((w, d), s) in enumerate(zip(widths, sparsities, strict=True))]


def row(name: str, family: str, *, accuracy: float | None, nonzero: int | None = DENSE_PARAMS,
        macs: int | None = DENSE_MACS, disk: int | None = DENSE_BYTES,
        b1: float | None = 1.0, b64: float | None = 1.0, accuracy_before: float | None = 0.1,
        layer_rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One finished results row; ``b1`` / ``b64`` are speedups over dense (None: not timed)."""
    latency = {}
    for batch, speedup, dense_ms in (("b1", b1, DENSE_B1_MS), ("b64", b64, DENSE_B64_MS)):
        if speedup is not None:
            latency[batch] = {"median_ms": dense_ms / speedup, "iqr_ms": 0.01,
                              "dense_median_ms": dense_ms, "dense_iqr_ms": 0.01,
                              "speedup": speedup}
    result: dict[str, Any] = {
        "name": name, "family": family, "status": "done", "accuracy": accuracy,
        "accuracy_before": accuracy_before, "params": nonzero, "nonzero_params": nonzero,
        "macs": macs, "memory": {"peak_bytes": 33_000_000}, "latency_cpu": latency,
        "finetune": {"seconds": 100.0}, "layers": layer_rows or [],
    }
    if disk is not None:
        result["disk"] = {"bytes": disk, "path": f"models/{name}"}
    return result


def document(variants: list[dict[str, Any]], *, dense_accuracy: float = 0.9235,
             control_accuracy: float | None = 0.9289) -> dict[str, Any]:
    """A results document: dense, the control (unless None) and ``variants``."""
    dense = row("dense", "dense", accuracy=dense_accuracy, accuracy_before=None)
    dense["baseline"] = {"dataset": "Fashion-MNIST", "source": "shipped", "epochs": 4}
    control = None if control_accuracy is None else row(
        "dense+recovery", "control", accuracy=control_accuracy, accuracy_before=None)
    return {"schema": 1, "settings": {"model": "fmnist_resnet", "seed": 0}, "environment": {},
            "dense": dense, "control": control, "variants": {v["name"]: v for v in variants},
            "requested": [v["name"] for v in variants], "interrupted": False}
