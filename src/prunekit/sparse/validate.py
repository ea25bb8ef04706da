"""Consistency checks of encoded parts, so a corrupt or edited file fails with a clear error.

Every check runs before any part is used to index memory: decoding never trusts a count,
an offset or an index it has not checked against the logical shape.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import FormatError
from .formats import GAP_ESCAPE, Encoded, matrix_shape, nm_positions, on_host

_PARTS = {
    "dense": ({"values"}, set()),
    "bitmask": ({"bits", "values"}, set()),
    "gaps": ({"gaps", "values"}, set()),
    "csr": ({"crow", "col", "values"}, set()),
    "nm": ({"index", "values"}, {"bits"}),
}


def _fail(enc: Encoded, problem: str) -> FormatError:
    return FormatError(
        f"{enc.format} tensor of shape {list(enc.shape)}: {problem}",
        "the weights file is corrupt or does not belong to this manifest; save it again",
    )


def _check_vector(enc: Encoded, name: str, dtype: torch.dtype | None, length: int) -> None:
    part = enc.parts[name]
    if dtype is not None and part.dtype != dtype:
        raise _fail(enc, f"part {name!r} has dtype {part.dtype}, expected {dtype}")
    if part.dim() != 1 or part.numel() != length:
        raise _fail(enc, f"part {name!r} has shape {list(part.shape)}, expected [{length}]")


def _check_bits(enc: Encoded, numel: int) -> int:
    """Check the packed bitmask (padding bits must be 0); return the number of kept entries."""
    _check_vector(enc, "bits", torch.uint8, (numel + 7) // 8)
    packed = enc.parts["bits"].numpy()
    if numel % 8 and packed[-1] & ((1 << (8 - numel % 8)) - 1):
        raise _fail(enc, "padding bits after the last entry must be 0")
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return int(np.bitwise_count(packed).sum(dtype=np.int64))
    return int(np.unpackbits(packed).sum(dtype=np.int64))


def validate_encoded(enc: Encoded) -> None:
    """Raise :class:`FormatError` unless ``enc``'s parts fit its format and shape.

    Parts on another device are checked from a host copy.

    Args:
        enc: the encoded tensor.

    Raises:
        FormatError: naming the format, the shape and what does not fit.
    """
    enc = on_host(enc)
    if enc.format not in _PARTS:
        raise _fail(enc, f"unknown format (known: {sorted(_PARTS)})")
    if any(not isinstance(d, int) or d < 0 for d in enc.shape):
        raise _fail(enc, "the shape must be a list of non-negative integers")
    required, optional = _PARTS[enc.format]
    names = set(enc.parts)
    if not required <= names or not names <= required | optional:
        raise _fail(enc, f"parts {sorted(names)}, expected {sorted(required)}")
    numel = math.prod(enc.shape)
    values = enc.parts["values"]
    if enc.format == "dense":
        if tuple(values.shape) != enc.shape:
            raise _fail(enc, f"stored shape {list(values.shape)} != logical shape")
        return
    if not values.is_floating_point():
        raise _fail(enc, f"sparse values must be floating point, got {values.dtype}")
    if enc.format == "bitmask":
        _check_vector(enc, "values", None, _check_bits(enc, numel))
    elif enc.format == "gaps":
        _validate_gaps(enc, numel)
    elif enc.format == "csr":
        _validate_csr(enc)
    else:
        _validate_nm(enc, numel)


def _validate_gaps(enc: Encoded, numel: int) -> None:
    gaps = enc.parts["gaps"]
    _check_vector(enc, "gaps", torch.uint8, gaps.numel() if gaps.dim() == 1 else -1)
    codes = gaps.numpy()
    escapes = int(np.count_nonzero(codes == 0))
    _check_vector(enc, "values", None, codes.size - escapes)
    if codes.size and codes[-1] == 0:
        raise _fail(enc, "the distances must not end with an escape code")
    if int(codes.sum(dtype=np.int64)) + escapes * GAP_ESCAPE > numel:
        raise _fail(enc, f"kept positions run past the last of {numel} entries")


def _validate_csr(enc: Encoded) -> None:
    if len(enc.shape) < 2:
        raise _fail(enc, "csr needs a tensor of at least 2 dims")
    rows, cols = matrix_shape(enc.shape)
    _check_vector(enc, "crow", torch.int32, rows + 1)
    crow = enc.parts["crow"].to(torch.int64)
    nnz = int(crow[-1])
    if int(crow[0]) != 0 or bool((crow.diff() < 0).any()) or bool((crow.diff() > cols).any()):
        raise _fail(enc, "row pointers must start at 0 and grow by 0..cols per row")
    _check_vector(enc, "col", torch.int32, nnz)
    _check_vector(enc, "values", None, nnz)
    col = enc.parts["col"].to(torch.int64)
    if nnz and (int(col.min()) < 0 or int(col.max()) >= cols):
        raise _fail(enc, f"column indices must lie in [0, {cols})")
    row_start = torch.zeros(nnz, dtype=torch.bool)
    row_start[crow[:-1][crow[:-1] < nnz]] = True
    if nnz > 1 and bool(((col.diff() <= 0) & ~row_start[1:]).any()):
        raise _fail(enc, "column indices must increase strictly within each row")


def _validate_nm(enc: Encoded, numel: int) -> None:
    n, m = enc.params.get("n"), enc.params.get("m")
    if not isinstance(n, int) or not isinstance(m, int) or not 2 <= m <= 256 or not 0 <= n <= m:
        raise _fail(enc, f"bad N:M parameters n={n!r}, m={m!r}")
    if len(enc.shape) < 2 or matrix_shape(enc.shape)[1] % m != 0:
        raise _fail(enc, f"rows do not split into groups of m={m}")
    stored = numel // m * n
    width = math.ceil(math.log2(m))
    _check_vector(enc, "values", None, stored)
    _check_vector(enc, "index", torch.uint8, (stored * width + 7) // 8)
    if "bits" in enc.parts:
        _check_bits(enc, numel)
    position = nm_positions(enc)
    if position.numel() and (int(position.max()) >= m or bool((position.diff(dim=1) <= 0).any())):
        raise _fail(enc, f"in-group positions must increase strictly and lie in [0, {m})")
