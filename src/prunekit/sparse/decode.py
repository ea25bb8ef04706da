"""Decoding stored tensors: into a fresh tensor, or straight into existing memory.

:func:`decode_into` writes into a model's own parameter (one pass, no temporary dense
copy), which is what keeps loading a sparse artefact close to loading a dense file.
Every function validates the parts first (:func:`.validate.validate_encoded`).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..errors import FormatError
from .formats import Encoded, matrix_shape
from .validate import validate_encoded


def unpack_bits(packed: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` bits of a packed (``numpy.packbits``) uint8 tensor, as bool."""
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=count).view(bool))


PARALLEL_MIN_NUMEL = 1 << 20


def _popcounts(packed: np.ndarray) -> np.ndarray:
    """Set bits per byte."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(packed)
    return np.unpackbits(packed[:, None], axis=1).sum(axis=1)


def _bitmask_into(flat: torch.Tensor, packed: np.ndarray, values: torch.Tensor) -> None:
    """``flat[bits] = values``, zeros elsewhere; large tensors in byte-aligned chunks on
    ``torch.get_num_threads()`` threads (``masked_scatter_`` itself runs on one core)."""
    numel = flat.numel()
    workers = max(1, torch.get_num_threads())
    if numel < PARALLEL_MIN_NUMEL or workers == 1:
        flat.zero_()
        flat.masked_scatter_(
            torch.from_numpy(np.unpackbits(packed, count=numel).view(bool)), values
        )
        return
    chunks = 4 * workers
    step = -(-packed.size // chunks)  # bytes per chunk
    offsets = np.concatenate([[0], np.cumsum(_popcounts(packed), dtype=np.int64)])

    def fill(chunk: int) -> None:
        first, last = chunk * step, min(packed.size, (chunk + 1) * step)
        start, stop = first * 8, min(numel, last * 8)
        bits = np.unpackbits(packed[first:last], count=stop - start).view(bool)
        with torch.no_grad():  # grad mode is per thread: a Parameter may be the target
            segment = flat[start:stop]
            segment.zero_()
            segment.masked_scatter_(torch.from_numpy(bits), values[offsets[first] : offsets[last]])

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fill, range(chunks)))


def nm_positions(enc: Encoded) -> torch.Tensor:
    """In-group positions ``(groups, n)`` of an ``nm``-encoded tensor."""
    n, m = enc.params["n"], enc.params["m"]
    width = math.ceil(math.log2(m))
    groups = math.prod(enc.shape) // m
    if n == 0:
        return torch.zeros(groups, 0, dtype=torch.int64)
    flat = np.unpackbits(enc.parts["index"].numpy(), count=groups * n * width)
    bits = flat.reshape(groups * n, width)  # msb first
    weights = (1 << np.arange(width - 1, -1, -1)).astype(np.int64)
    return torch.from_numpy(bits.astype(np.int64) @ weights).reshape(groups, n)


def _csr_coordinates(enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
    rows, _ = matrix_shape(enc.shape)
    crow = enc.parts["crow"].to(torch.int64)
    return torch.repeat_interleave(torch.arange(rows), crow.diff()), enc.parts["col"].to(
        torch.int64
    )


def decode_into(enc: Encoded, out: torch.Tensor) -> None:
    """Write the dense value of ``enc`` into ``out`` (same shape; values cast to its dtype).

    Raises:
        FormatError: inconsistent parts, or ``out`` of another shape.
    """
    validate_encoded(enc)
    if tuple(out.shape) != enc.shape:
        raise FormatError(f"cannot decode a {list(enc.shape)} tensor into {list(out.shape)}")
    if not out.is_contiguous():
        fresh = torch.empty(enc.shape, dtype=out.dtype)
        decode_into(enc, fresh)
        out.copy_(fresh)
        return
    values = enc.parts["values"].to(out.dtype)
    if enc.format == "dense":
        out.copy_(values)
        return
    if enc.format == "bitmask":
        _bitmask_into(out.view(-1), enc.parts["bits"].numpy(), values)
        return
    out.zero_()
    if enc.format == "csr":
        rows, cols = matrix_shape(enc.shape)
        out.view(rows, cols).index_put_(_csr_coordinates(enc), values)
    else:
        position = nm_positions(enc)
        out.view(position.shape[0], -1).scatter_(1, position, values.view(position.shape[0], -1))


def keep_mask(enc: Encoded) -> torch.Tensor:
    """The keep-mask (True = kept) an encoding records (nonzeros for ``dense``)."""
    validate_encoded(enc)
    numel = math.prod(enc.shape)
    if enc.format == "dense":
        values = enc.parts["values"]
        if not values.is_floating_point():
            return torch.ones(enc.shape, dtype=torch.bool)
        return values != 0
    if "bits" in enc.parts:
        return unpack_bits(enc.parts["bits"], numel).reshape(enc.shape)
    if enc.format == "csr":
        rows, cols = matrix_shape(enc.shape)
        keep = torch.zeros(rows, cols, dtype=torch.bool)
        keep[_csr_coordinates(enc)] = True
        return keep.reshape(enc.shape)
    position = nm_positions(enc)
    keep = torch.zeros(position.shape[0], enc.params["m"], dtype=torch.bool)
    return keep.scatter_(1, position, True).reshape(enc.shape)


def decode(enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense tensor and keep-mask of an encoded tensor (inverse of ``encode``).

    Raises:
        FormatError: the parts are inconsistent with the format and shape (corrupt file).
    """
    validate_encoded(enc)
    out = torch.empty(enc.shape, dtype=enc.parts["values"].dtype)
    decode_into(enc, out)
    return out, keep_mask(enc)
