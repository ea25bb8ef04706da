"""The one timing primitive: wall-clock milliseconds of a call, device work included.

Every latency figure prunekit reports (model latency, kernel choice, latency tables, the
benchmarks) is built from :func:`elapsed_ms` and summarised by :func:`median_iqr`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device | str | None) -> None:
    """Wait for queued CUDA work on ``device`` (a no-op on the CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def elapsed_ms(fn: Callable[[], object], device: torch.device | str | None = None) -> float:
    """Milliseconds one call of ``fn`` takes, synchronised with ``device`` before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - start) * 1000.0


def median_iqr(samples: list[float]) -> tuple[float, float]:
    """Median and interquartile range of ``samples`` (IQR 0 for fewer than two)."""
    if len(samples) < 2:
        return (samples[0] if samples else 0.0), 0.0
    q = statistics.quantiles(samples, n=4)
    return statistics.median(samples), q[2] - q[0]


def repeated_ms(fn: Callable[[], object], repeats: int, *, warmup: int = 0,
                device: torch.device | str | None = None) -> list[float]:
    """``repeats`` timings of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    return [elapsed_ms(fn, device) for _ in range(repeats)]
