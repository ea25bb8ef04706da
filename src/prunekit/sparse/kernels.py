"""A compiled CSR x dense kernel for batched CPU inference (numba, optional).

torch's CPU CSR product (MKL) is fast for a few input rows but falls behind from about 32
rows on, where it reaches only 1.5-1.9x of dense at 90% sparsity on a 768x3072 layer. This
kernel computes ``y = x W^T + b`` row of ``W`` by row: the input is first transposed to
``(in, rows)`` so that every kept weight ``W[i, j]`` adds ``W[i, j] * x[:, j]`` (one
contiguous vector) into output row ``i``, four kept weights per pass over the accumulator.
Output rows are split across threads. On these CPUs it is 3.1x dense at 90% and 5.0x at 95%
for a 768x3072 layer at 64 rows and 2 threads (``benchmarks/bench_sparse.py``).

numba is an optional dependency (the ``kernels`` extra): without it, or for dtypes other
than float32 / float64, :class:`.modules.CSRLinear` keeps torch's kernel.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

MIN_ROWS = 32  # below this many input rows torch's CSR kernel is as fast or faster
DTYPES = (torch.float32, torch.float64)
ROWS_PER_TASK = 16  # output rows per parallel task

try:
    import numba
    from numba import njit, prange
except ImportError:  # the kernels extra is not installed
    numba = None  # type: ignore[assignment]


def available() -> bool:
    """True if the compiled kernel can run (numba is installed)."""
    return numba is not None


if numba is not None:

    @njit(parallel=True, fastmath=True, cache=True)
    def _transpose_into(src: np.ndarray, dst: np.ndarray) -> None:  # pragma: no cover - jit
        rows, cols = src.shape
        row_tiles, col_tiles = (rows + 31) // 32, (cols + 31) // 32
        for tile in prange(row_tiles * col_tiles):  # 32x32 tiles: both sides stay in cache
            r0, c0 = (tile // col_tiles) * 32, (tile % col_tiles) * 32
            for c in range(c0, min(cols, c0 + 32)):
                for r in range(r0, min(rows, r0 + 32)):
                    dst[c, r] = src[r, c]

    @njit(parallel=True, fastmath=True, cache=True)
    def _csr_rows(  # pragma: no cover - jit
        crow: np.ndarray,
        col: np.ndarray,
        values: np.ndarray,
        bias: np.ndarray,
        xt: np.ndarray,
        y: np.ndarray,
    ) -> None:
        n, out_rows = y.shape
        tasks = (out_rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
        for task in prange(tasks):
            acc = np.empty(n, dtype=y.dtype)
            for i in range(task * ROWS_PER_TASK, min(out_rows, (task + 1) * ROWS_PER_TASK)):
                acc[:] = bias[i] if bias.size else 0
                k, end = crow[i], crow[i + 1]
                while k + 4 <= end:  # four kept weights per pass over acc
                    v0, v1, v2, v3 = values[k], values[k + 1], values[k + 2], values[k + 3]
                    x0, x1, x2, x3 = xt[col[k]], xt[col[k + 1]], xt[col[k + 2]], xt[col[k + 3]]
                    for b in range(n):
                        acc[b] += v0 * x0[b] + v1 * x1[b] + v2 * x2[b] + v3 * x3[b]
                    k += 4
                while k < end:
                    v0, x0 = values[k], xt[col[k]]
                    for b in range(n):
                        acc[b] += v0 * x0[b]
                    k += 1
                for b in range(n):  # the task's rows fill whole cache lines of y together
                    y[b, i] = acc[b]


def usable(x: torch.Tensor, values: torch.Tensor) -> bool:
    """True if :func:`csr_linear` should run for input rows ``x`` (2-D) and these values:
    numba present, CPU, a supported dtype, at least :data:`MIN_ROWS` rows, and no gradient
    needed (the kernel has no backward; torch's has)."""
    return (
        numba is not None
        and x.device.type == "cpu"
        and values.device.type == "cpu"
        and x.dtype == values.dtype
        and x.dtype in DTYPES
        and x.shape[0] >= MIN_ROWS
        and not (torch.is_grad_enabled() and x.requires_grad)
    )


def csr_linear(
    x: torch.Tensor,
    crow: torch.Tensor,
    col: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """``x W^T + b`` for ``x`` of shape ``(rows, in)`` and ``W`` in CSR (int32 indices).

    Call only where :func:`usable` is True. Threads: ``torch.get_num_threads()``.
    """
    assert numba is not None
    most = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(max(1, min(torch.get_num_threads(), most)))
    rows, in_features = x.shape
    out_features = crow.numel() - 1
    xt = torch.empty(in_features, rows, dtype=x.dtype)
    _transpose_into(x.detach().contiguous().numpy(), xt.numpy())
    y = torch.empty(rows, out_features, dtype=x.dtype)
    b = np.empty(0, dtype=xt.numpy().dtype) if bias is None else bias.detach().to(x.dtype).numpy()
    _csr_rows(crow.numpy(), col.numpy(), values.numpy(), b, xt.numpy(), y.numpy())
    return y
