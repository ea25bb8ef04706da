"""Compiled CPU kernels (numba, optional): a CSR x dense product and ``gaps`` decoders.

**CSR product.** torch's CPU CSR product (MKL) is fast for a few input rows but falls
behind from about 32 rows on: 1.7x dense at 90% sparsity for a 768x3072 layer at 64 rows.
This kernel computes ``y = x W^T + b`` row of ``W`` by row: the input is first transposed
to ``(in, rows)``, so every kept weight ``W[i, j]`` adds ``W[i, j] * x[:, j]`` (one
contiguous vector) into output row ``i``'s accumulator, eight kept weights per pass over
it. Output rows are split across threads. For a 768x3072 layer at 64 rows and 2 threads it
is 2.3x dense at 90% and 3.3x at 95% (``benchmarks/bench_sparse.py``).

**gaps decoders.** One writes a ``gaps``-stored tensor (and its keep-mask) into place,
zeroing a cache-sized block and then writing its kept entries while it is still in cache;
the other turns the codes into CSR row pointers and column indices directly. Threads split
the codes after a first pass that sums each share's distances. The numpy paths they
replace build an int64 position array first and write through it (numpy's indexed write,
about 2.5 ns per kept weight, single-threaded).

numba is an optional dependency (the ``kernels`` extra): without it, or for dtypes the
kernels do not cover, callers keep their torch / numpy paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .formats import GAP_ESCAPE

MIN_ROWS = 32  # below this many input rows torch's CSR kernel is as fast or faster
DTYPES = (torch.float32, torch.float64)
ROWS_PER_TASK = 16  # output rows per parallel task
ZERO_BLOCK = 1 << 14  # entries the gaps decoder zeroes and fills while they are in cache

try:
    import numba
    from numba import njit, prange
except ImportError:  # the kernels extra is not installed
    numba = None  # type: ignore[assignment]


def available() -> bool:
    """True if the compiled kernel can run (numba is installed)."""
    return numba is not None


def _compiled(fastmath: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``numba.njit(parallel=True, cache=True)``, or without the on-disk cache where numba
    finds no writable place for it (then each process compiles on its first call, ~2 s)."""

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return njit(function, parallel=True, fastmath=fastmath, cache=True)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(function, parallel=True, fastmath=fastmath)

    return wrap


if numba is not None:

    @_compiled(fastmath=True)
    def _transpose_into(src: np.ndarray, dst: np.ndarray) -> None:  # pragma: no cover - jit
        rows, cols = src.shape
        row_tiles, col_tiles = (rows + 31) // 32, (cols + 31) // 32
        for tile in prange(row_tiles * col_tiles):  # 32x32 tiles: both sides stay in cache
            r0, c0 = (tile // col_tiles) * 32, (tile % col_tiles) * 32
            for c in range(c0, min(cols, c0 + 32)):
                for r in range(r0, min(rows, r0 + 32)):
                    dst[c, r] = src[r, c]

    @_compiled(fastmath=True)
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
                while k + 8 <= end:  # eight kept weights per pass over acc
                    v0, v1, v2, v3 = values[k], values[k + 1], values[k + 2], values[k + 3]
                    v4, v5, v6, v7 = values[k + 4], values[k + 5], values[k + 6], values[k + 7]
                    x0, x1, x2, x3 = xt[col[k]], xt[col[k + 1]], xt[col[k + 2]], xt[col[k + 3]]
                    x4, x5 = xt[col[k + 4]], xt[col[k + 5]]
                    x6, x7 = xt[col[k + 6]], xt[col[k + 7]]
                    for b in range(n):
                        acc[b] += (v0 * x0[b] + v1 * x1[b] + v2 * x2[b] + v3 * x3[b]) + (
                            v4 * x4[b] + v5 * x5[b] + v6 * x6[b] + v7 * x7[b]
                        )
                    k += 8
                while k < end:
                    v0, x0 = values[k], xt[col[k]]
                    for b in range(n):
                        acc[b] += v0 * x0[b]
                    k += 1
                for b in range(n):  # the task's rows fill whole cache lines of y together
                    y[b, i] = acc[b]

    @_compiled()
    def _share_starts(  # pragma: no cover - jit
        codes: np.ndarray, shares: int, step: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per share of ``step`` codes (and one past the last): the position reached before
        it (-1 before the first), the index of its first value, and the position of the
        last kept entry before it (-1 if none)."""
        count = codes.size
        advance = np.zeros(shares + 1, dtype=np.int64)
        kept = np.zeros(shares + 1, dtype=np.int64)
        last_kept = np.full(shares + 1, -1, dtype=np.int64)  # first: within each share
        for share in prange(shares):
            total, n = 0, 0
            for t in range(share * step, min(count, (share + 1) * step)):
                code = codes[t]
                total += GAP_ESCAPE if code == 0 else code
                if code != 0:
                    n += 1
                    last_kept[share + 1] = total
            advance[share + 1], kept[share + 1] = total, n
        advance[0] = -1
        for share in range(shares):
            within = last_kept[share + 1]
            last_kept[share + 1] = last_kept[share] if within < 0 else advance[share] + within
            advance[share + 1] += advance[share]
            kept[share + 1] += kept[share]
        return advance, kept, last_kept

    @_compiled()
    def _gaps_csr(  # pragma: no cover - jit
        codes: np.ndarray, cols: int, crow: np.ndarray, col: np.ndarray, shares: int
    ) -> None:
        """CSR row pointers and column indices of a validated ``(rows, cols)`` gaps part.

        Each kept entry ``v`` in row ``r`` sets ``crow[k] = v`` for the rows ``k`` after the
        previous kept entry's row up to ``r``; the rows after the last kept entry get nnz.
        """
        count, rows = codes.size, crow.size - 1
        step = (count + shares - 1) // shares
        advance, kept, last_kept = _share_starts(codes, shares, step)
        for share in prange(shares):
            start, before = advance[share], last_kept[share]
            row, column = (start // cols, start % cols) if start >= 0 else (-1, cols - 1)
            previous_row = before // cols if before >= 0 else -1
            v = kept[share]
            for t in range(share * step, min(count, (share + 1) * step)):
                code = codes[t]
                column += GAP_ESCAPE if code == 0 else code
                while column >= cols:
                    column -= cols
                    row += 1
                if code != 0:
                    for k in range(previous_row + 1, row + 1):
                        crow[k] = v
                    previous_row = row
                    col[v] = column
                    v += 1
        last = last_kept[shares]
        for k in range(last // cols + 1 if last >= 0 else 0, rows + 1):
            crow[k] = kept[shares]

    @_compiled()
    def _gaps_into(  # pragma: no cover - jit
        codes: np.ndarray, values: np.ndarray, out: np.ndarray, mask: np.ndarray, shares: int
    ) -> None:
        count, numel, with_mask = codes.size, out.size, mask.size > 0
        step = (count + shares - 1) // shares
        advance, kept, _ = _share_starts(codes, shares, step)
        for share in prange(shares):
            t, stop = share * step, min(count, (share + 1) * step)
            position, v = advance[share], kept[share]
            last = numel - 1 if share == shares - 1 else advance[share + 1]
            block = position + 1
            while block <= last:  # zero a cache-sized block, then write its kept entries
                block_end = min(last + 1, block + ZERO_BLOCK)
                out[block:block_end] = 0
                if with_mask:
                    mask[block:block_end] = False
                while t < stop:
                    code = codes[t]
                    ahead = position + (GAP_ESCAPE if code == 0 else code)
                    if ahead >= block_end:
                        break
                    if code != 0:
                        out[ahead] = values[v]
                        if with_mask:
                            mask[ahead] = True
                        v += 1
                    position, t = ahead, t + 1
                block = block_end


def gaps_usable(out: torch.Tensor, mask: torch.Tensor | None) -> bool:
    """True if :func:`gaps_into` can write into ``out`` (and ``mask``)."""
    return (
        numba is not None
        and out.device.type == "cpu"
        and out.dtype in DTYPES
        and out.is_contiguous()
        and (mask is None or (mask.dtype == torch.bool and mask.is_contiguous()))
    )


def gaps_into(
    codes: torch.Tensor, values: torch.Tensor, out: torch.Tensor, mask: torch.Tensor | None
) -> None:
    """Decode validated ``gaps`` parts into ``out`` (values already in its dtype) and the
    keep-mask into ``mask``. Call only where :func:`gaps_usable` is True and the parts passed
    :func:`.validate.validate_encoded`: the kernel does not check bounds."""
    assert numba is not None
    with _threads() as threads:  # always: any parallel call may start numba's pool
        shares = threads if out.numel() >= 1 << 20 else 1
        flags = np.empty(0, dtype=bool) if mask is None else mask.detach().view(-1).numpy()
        target = out.detach().view(-1).numpy()
        _gaps_into(codes.numpy(), values.detach().numpy(), target, flags, shares)


def gaps_csr(
    codes: torch.Tensor, nnz: int, rows: int, cols: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(crow, col)`` (int32) of a validated ``gaps`` part with ``nnz`` kept entries (its
    values' count) of a ``(rows, cols)`` matrix."""
    assert numba is not None
    crow = np.empty(rows + 1, dtype=np.int32)
    col = np.empty(nnz, dtype=np.int32)
    with _threads() as threads:
        shares = threads if codes.numel() >= 1 << 18 else 1
        _gaps_csr(codes.numpy(), cols, crow, col, shares)
    return torch.from_numpy(crow), torch.from_numpy(col)


class _threads:  # noqa: N801 - used as ``with _threads() as threads:``
    """Inside the block numba runs ``torch.get_num_threads()`` threads (within its own
    maximum; the count is the block's value); after it, numba's and torch's thread counts
    are what they were before.

    numba's OpenMP pool runs in the OpenMP runtime torch already loaded, and starting it (on
    the first call, which reading numba's count does) sets that runtime's thread count to
    numba's maximum, which would silently undo the user's ``torch.set_num_threads``: so
    torch's count is put back too.

    A class rather than a generator: small kernels are called often, and the generator
    form cost about 1.4 us more per call.
    """

    __slots__ = ("wanted", "users", "threads")

    def __enter__(self) -> int:
        assert numba is not None
        self.wanted = wanted = torch.get_num_threads()
        self.users = numba.get_num_threads()  # starts the pool if it was not running
        self.threads = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
        if self.users != self.threads:  # setting costs microseconds
            numba.set_num_threads(self.threads)
        _restore_torch_threads(wanted)
        return self.threads

    def __exit__(self, *exc: object) -> None:
        if self.users != self.threads:
            numba.set_num_threads(self.users)
        _restore_torch_threads(self.wanted)


def _restore_torch_threads(wanted: int) -> None:
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def usable(x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """True if :func:`csr_linear` should run for input rows ``x`` (2-D), these values and
    this bias: numba present, CPU, a supported dtype, at least :data:`MIN_ROWS` rows, and
    no gradient needed by any of them (the kernel has no backward; torch's has).

    Args:
        x: the input rows, (rows, in).
        values: the CSR values.
        bias: the layer's bias, or None.

    Returns:
        Whether the compiled kernel may compute the product.
    """
    return (
        numba is not None
        and x.shape[0] >= MIN_ROWS
        and on_cpu_without_grad(x, values, bias, DTYPES)
    )


def on_cpu_without_grad(x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None,
                        dtypes: tuple[torch.dtype, ...]) -> bool:
    """The conditions every compiled kernel shares: input and values on the CPU in one of
    ``dtypes`` (the same for both), and no gradient needed by any of them (the kernels have
    no backward)."""
    # Checked on every call of a layer: written without generators or device objects,
    # which cost microseconds that show at batch 1.
    wants_grad = torch.is_grad_enabled() and (
        x.requires_grad or values.requires_grad or (bias is not None and bias.requires_grad)
    )
    return (
        x.is_cpu
        and values.is_cpu
        and x.dtype == values.dtype
        and x.dtype in dtypes
        and not wants_grad
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
    rows, in_features = x.shape
    out_features = crow.numel() - 1
    xt = torch.empty(in_features, rows, dtype=x.dtype)
    y = torch.empty(rows, out_features, dtype=x.dtype)
    b = np.empty(0, dtype=xt.numpy().dtype) if bias is None else bias.detach().to(x.dtype).numpy()
    with _threads():
        _transpose_into(x.detach().contiguous().numpy(), xt.numpy())
        _csr_rows(crow.numpy(), col.numpy(), values.numpy(), b, xt.numpy(), y.numpy())
    return y
