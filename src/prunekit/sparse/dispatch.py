"""Per-layer kernel choice: time dense and sparse on this device and batch, keep the winner.

Rule (from the measurements of ``benchmarks/bench_sparse.py``): below
``min_sparsity`` (default 50%) sparse kernels always lose, so such layers stay dense without
timing. Otherwise both versions run on a random input of the layer's real row count, in
alternating rounds, and the sparse kernel is kept only if it beats dense by ``margin``
(default 10%) both at the median and at the 75th percentile of the timings: on a busy
machine multi-threaded sparse kernels have a slow tail, and a layer must not get slower.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..measure.timing import elapsed_ms
from .formats import group_counts
from .modules import CSRLinear, SemiStructuredLinear, semi_structured_available

log = logging.getLogger(__name__)
KERNELS = ("dense", "csr", "2:4")


@dataclass(frozen=True)
class KernelChoice:
    """The kernel a layer will run and why (times in milliseconds, None if not timed)."""

    kernel: str
    dense_ms: float | None
    sparse_ms: float | None
    reason: str


def time_pair(
    first: Callable[[], object],
    second: Callable[[], object],
    device: torch.device,
    budget_s: float = 0.2,
    max_rounds: int = 50,
) -> tuple[list[float], list[float]]:
    """Seconds of two calls, measured in alternating rounds (one warm-up each)."""
    times: tuple[list[float], list[float]] = ([], [])
    with torch.inference_mode():
        first(), second()
        start = time.perf_counter()
        while len(times[0]) < max_rounds and (
            len(times[0]) < 5 or time.perf_counter() - start < budget_s
        ):
            for fn, bucket in ((first, times[0]), (second, times[1])):
                bucket.append(elapsed_ms(fn, device) / 1000.0)
    return times


def weight_sparsity(weight: torch.Tensor) -> float:
    """Fraction of ``weight``'s entries that are zero."""
    return 1.0 - int(torch.count_nonzero(weight)) / max(1, weight.numel())


def below_min_sparsity(weight: torch.Tensor, min_sparsity: float) -> KernelChoice | None:
    """The untimed dense choice for a weight with fewer than ``min_sparsity`` zeros, or None
    if it has enough to be worth timing."""
    sparsity = weight_sparsity(weight)
    if sparsity < min_sparsity:
        return KernelChoice("dense", None, None, f"sparsity {sparsity:.0%} < {min_sparsity:.0%}")
    return None


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cautious_speedup(dense: list[float], sparse: list[float]) -> float:
    """Dense / sparse time at the median and at the 75th percentile, whichever is lower."""
    return min(_quantile(dense, q) / _quantile(sparse, q) for q in (0.5, 0.75))


def is_two_four(weight: torch.Tensor) -> bool:
    """True if every group of 4 consecutive inputs has at most 2 nonzeros."""
    counts = group_counts(weight != 0).get(4) if weight.dim() == 2 else None
    return counts is not None and int(counts.max()) <= 2


def sparse_module(linear: nn.Linear, kernel: str) -> nn.Module:
    """``linear`` rebuilt with ``kernel`` ("csr" or "2:4")."""
    if kernel == "csr":
        return CSRLinear.from_linear(linear)
    return SemiStructuredLinear(linear)


def candidate_kernels(linear: nn.Linear) -> list[str]:
    """Sparse kernels that can run this layer's weight on its device and dtype.

    CSR runs any floating weight on the CPU (bf16 / fp16 multiply in float32 there, see
    :meth:`.modules.CSRLinear.torch_product`) and on CUDA; 2:4 needs CUDA with fp16 / bf16.
    """
    weight = linear.weight
    kernels = []
    if weight.is_floating_point() and weight.device.type in ("cpu", "cuda"):
        kernels.append("csr")
    if semi_structured_available(weight) and is_two_four(weight.detach()):
        kernels.append("2:4")
    return kernels


def choose_kernel(
    linear: nn.Linear, rows: int, *, min_sparsity: float = 0.5, margin: float = 0.1
) -> tuple[KernelChoice, nn.Module | None]:
    """Time dense and each sparse kernel for ``linear`` on ``rows`` input rows.

    Args:
        linear: the (finalized) dense layer; its zeros are the pruned weights.
        rows: input rows per call (batch size x tokens).
        min_sparsity: below this, stay dense without timing.
        margin: a sparse kernel must be at least this fraction faster than dense.

    Returns:
        The choice and the sparse module to use (None when dense wins).
    """
    weight = linear.weight.detach()
    too_dense = below_min_sparsity(weight, min_sparsity)
    if too_dense is not None:
        return too_dense, None
    x = torch.randn(rows, linear.in_features, device=weight.device, dtype=weight.dtype)
    best: tuple[KernelChoice, nn.Module | None] = (KernelChoice("dense", None, None, ""), None)
    for kernel in candidate_kernels(linear):
        try:
            module = sparse_module(linear, kernel)
        except (RuntimeError, ValueError) as exc:  # shape or dtype the kernel refuses
            log.debug("kernel %s refused %s: %s", kernel, tuple(weight.shape), exc)
            continue

        def run_dense() -> torch.Tensor:
            return F.linear(x, weight, linear.bias)

        def run_sparse(module: nn.Module = module) -> torch.Tensor:
            out: torch.Tensor = module(x)
            return out

        dense_times, sparse_times = time_pair(run_dense, run_sparse, weight.device)
        dense_s, sparse_s = _quantile(dense_times, 0.5), _quantile(sparse_times, 0.5)
        speedup = cautious_speedup(dense_times, sparse_times)
        choice = KernelChoice(
            kernel, dense_s * 1e3, sparse_s * 1e3, f"{kernel} {speedup:.2f}x dense"
        )
        if speedup >= 1.0 + margin and (
            best[1] is None or sparse_s * 1e3 < (best[0].sparse_ms or 0)
        ):
            best = (choice, module)
        elif best[1] is None:
            best = (
                KernelChoice(
                    "dense",
                    choice.dense_ms,
                    choice.sparse_ms,
                    f"{kernel} only {speedup:.2f}x dense",
                ),
                None,
            )
    if best[0].reason == "":
        best = (KernelChoice("dense", None, None, "no sparse kernel for this device/dtype"), None)
    return best
