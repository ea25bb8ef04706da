"""Decoding stored tensors: into a fresh tensor, or straight into existing memory.

:func:`decode_into` writes into a model's own parameter (one pass, no temporary dense
copy), which is what keeps loading a sparse artefact close to loading a dense file.
Every function validates the parts first (:func:`.validate.validate_encoded`) unless the
caller passes ``validate=False`` for parts it has already validated.

Decoding runs on the CPU (numpy and the compiled kernels read the parts there; parts held
elsewhere are copied to the host first). A target on another device (a model built on
CUDA) is decoded into CPU memory and copied over once, so the model's tensors stay where
they are; fresh tensors (:func:`decode`, :func:`keep_mask`, :func:`csr_parts`) are CPU
tensors.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..errors import FormatError
from . import kernels
from .formats import GAP_ESCAPE, INT32_MAX, Encoded, matrix_shape, nm_positions, on_host
from .validate import validate_encoded


def unpack_bits(packed: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` bits of a packed (``numpy.packbits``) uint8 tensor, as a CPU
    bool tensor."""
    return torch.from_numpy(np.unpackbits(packed.cpu().numpy(), count=count).view(bool))


PARALLEL_MIN_NUMEL = 1 << 22
CACHE_BLOCK = 1 << 18  # entries zeroed and then scattered into while in cache


def _popcounts(packed: np.ndarray) -> np.ndarray:
    """Set bits per byte."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(packed)
    return np.unpackbits(packed[:, None], axis=1).sum(axis=1)


def empty_like_numpy(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor in memory that numpy allocates.

    numpy asks the kernel for transparent huge pages for large buffers, so writing a fresh
    64 MB buffer (a keep-mask at load) costs a few page faults instead of ~16k; a torch
    allocation of the same size takes several times longer to fill the first time.
    """
    nbytes = math.prod(shape) * dtype.itemsize
    return torch.from_numpy(np.empty(nbytes, dtype=np.uint8)).view(dtype).view(shape)


_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64, torch.bool)  # written via numpy


def _bits_into(out: torch.Tensor, bits: np.ndarray) -> None:
    """``out[:] = bits`` (bool -> 0/1 in ``out``'s dtype); numpy converts fastest."""
    target = out.numpy() if out.dtype in _NUMPY_DTYPES else None
    if target is not None:
        np.copyto(target, bits)
    else:
        out.copy_(torch.from_numpy(bits))


def gap_positions(gaps: torch.Tensor) -> np.ndarray:
    """The ascending flat positions (int64) a ``gaps`` part encodes: its running sum - 1,
    with escape codes (0) counting :data:`.formats.GAP_ESCAPE` and then dropped."""
    codes = gaps.cpu().numpy()
    escape = codes == 0
    escaped = bool(escape.any())
    position = codes.astype(np.int64)  # then summed in place: faster than a casting cumsum
    if escaped:
        position[escape] = GAP_ESCAPE
    np.cumsum(position, out=position)
    position -= 1
    return position[~escape] if escaped else position


def _put_blocks(
    flat: torch.Tensor,
    position: np.ndarray,
    source: torch.Tensor | None,
    cuts: list[int],
    nonzero: np.ndarray | None = None,
) -> None:
    """``flat[position] = source`` (1 where ``source`` is None), zeros elsewhere; with
    ``nonzero`` (numpy dtypes only), also ``nonzero[:] = flat != 0`` from the block in cache.

    Zeroing and writing go block by block (:data:`CACHE_BLOCK` entries; ``cuts[k]`` is the
    first position in block ``k``), so the values land in a block still in cache instead of
    the whole tensor being read back from memory. The blocks are written with numpy where it
    has the dtype: per-block torch calls would each start and join the torch thread pool,
    which on a busy machine costs more than the work.
    """
    blocks = enumerate(itertools.pairwise(cuts))
    if flat.dtype in _NUMPY_DTYPES:
        target = flat.numpy()
        values = None if source is None else source.numpy()
        for block, (first, last) in blocks:
            span = slice(block * CACHE_BLOCK, (block + 1) * CACHE_BLOCK)
            target[span] = 0
            target[position[first:last]] = 1 if values is None else values[first:last]
            if nonzero is not None:
                np.not_equal(target[span], 0, out=nonzero[span])
        return
    index = torch.from_numpy(position)
    for block, (first, last) in blocks:
        flat[block * CACHE_BLOCK : (block + 1) * CACHE_BLOCK].zero_()
        if source is None:
            flat.index_fill_(0, index[first:last], 1)
        else:
            flat.scatter_(0, index[first:last], source[first:last])


def _block_cuts(position: np.ndarray, numel: int) -> list[int]:
    return np.searchsorted(position, np.arange(0, numel + CACHE_BLOCK, CACHE_BLOCK)).tolist()


def _fill_bits(
    flat: torch.Tensor, packed: np.ndarray, values: torch.Tensor, mask: torch.Tensor | None
) -> None:
    """``flat[bits] = values``, zeros elsewhere (and ``mask[:] = bits``) for one chunk.

    The kept positions come from ``numpy.flatnonzero`` (branch-free) and are written by
    index, about 3x faster than ``masked_scatter_`` (a branchy serial loop).
    """
    numel = flat.numel()
    bits = np.unpackbits(packed, count=numel).view(bool)
    position = np.flatnonzero(bits)
    _put_blocks(flat, position, values, _block_cuts(position, numel))
    if mask is not None:
        _bits_into(mask, bits)


def _fill_positions(
    flat: torch.Tensor, position: np.ndarray, values: torch.Tensor, mask: torch.Tensor | None
) -> None:
    """``flat[position] = values``, zeros elsewhere (and the same positions set in ``mask``).

    A bool mask next to a numpy-typed ``flat`` is filled as ``flat != 0`` while each block is
    still in cache, then set at the kept positions whose value is 0 (rare); otherwise it gets
    its own indexed write.
    """
    cuts = _block_cuts(position, flat.numel())
    if mask is not None and mask.dtype == torch.bool and flat.dtype in _NUMPY_DTYPES:
        nonzero = mask.numpy()
        _put_blocks(flat, position, values, cuts, nonzero)
        nonzero[position[(values == 0).numpy()]] = True
        return
    _put_blocks(flat, position, values, cuts)
    if mask is not None:
        _put_blocks(mask, position, None, cuts)


def _in_threads(fill: Callable[[int], None], chunks: int) -> None:
    """``fill(0..chunks-1)`` on a thread pool (grad mode is per thread: a Parameter may be
    the target, so every chunk runs under ``no_grad``)."""

    def run(chunk: int) -> None:
        with torch.no_grad():
            fill(chunk)

    with ThreadPoolExecutor(chunks) as pool:
        list(pool.map(run, range(chunks)))


def _bitmask_into(
    flat: torch.Tensor, packed: np.ndarray, values: torch.Tensor, mask: torch.Tensor | None = None
) -> None:
    """``flat[bits] = values``, zeros elsewhere; optionally ``mask[:] = bits`` (flat, same
    length). Large tensors go in byte-aligned chunks on ``torch.get_num_threads()`` threads.

    The parts must be validated: ``values`` holds exactly one entry per set bit.
    """
    numel = flat.numel()
    workers = max(1, torch.get_num_threads())
    if numel < PARALLEL_MIN_NUMEL or workers == 1:
        _fill_bits(flat, packed, values, mask)
        return
    step = -(-packed.size // workers)  # bytes per chunk
    firsts = np.arange(0, packed.size, step)
    per_chunk = np.add.reduceat(_popcounts(packed), firsts, dtype=np.int64)
    offsets = [0, *np.cumsum(per_chunk).tolist()]

    def fill(chunk: int) -> None:
        first, last = chunk * step, min(packed.size, (chunk + 1) * step)
        start, stop = first * 8, min(numel, last * 8)
        _fill_bits(
            flat[start:stop],
            packed[first:last],
            values[offsets[chunk] : offsets[chunk + 1]],
            None if mask is None else mask[start:stop],
        )

    _in_threads(fill, len(firsts))


def _positions_into(
    flat: torch.Tensor, position: np.ndarray, values: torch.Tensor, mask: torch.Tensor | None
) -> None:
    """:func:`_bitmask_into` for ascending flat positions (``values[i]`` goes to
    ``position[i]``); large tensors in equal chunks on ``torch.get_num_threads()`` threads."""
    numel = flat.numel()
    workers = max(1, torch.get_num_threads())
    if numel < PARALLEL_MIN_NUMEL or workers == 1:
        _fill_positions(flat, position, values, mask)
        return
    step = -(-numel // workers)
    bounds = [*range(0, numel, step), numel]
    cuts = np.searchsorted(position, bounds).tolist()

    def fill(chunk: int) -> None:
        start, stop = bounds[chunk], bounds[chunk + 1]
        first, last = cuts[chunk], cuts[chunk + 1]
        _fill_positions(
            flat[start:stop],
            position[first:last] - start,
            values[first:last],
            None if mask is None else mask[start:stop],
        )

    _in_threads(fill, len(bounds) - 1)


def _writable_here(target: torch.Tensor) -> bool:
    """True if the decoders can write ``target`` in place: contiguous CPU memory."""
    return target.device.type == "cpu" and target.is_contiguous()


def _csr_coordinates(enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
    rows, _ = matrix_shape(enc.shape)
    crow = enc.parts["crow"].to(torch.int64)
    return torch.repeat_interleave(torch.arange(rows), crow.diff()), enc.parts["col"].to(
        torch.int64
    )


def decode_into(enc: Encoded, out: torch.Tensor, *, validate: bool = True) -> None:
    """Write the dense value of ``enc`` into ``out`` (same shape; values cast to its dtype).

    Args:
        enc: the encoded tensor.
        out: where to write, on any device (decoded on the CPU, then copied there).
        validate: check the parts first; pass False only for parts that
            :func:`.validate.validate_encoded` already accepted.

    Raises:
        FormatError: inconsistent parts, or ``out`` of another shape.
    """
    decode_masked_into(enc, out, None, validate=validate)


def decode_masked_into(
    enc: Encoded, out: torch.Tensor, mask: torch.Tensor | None, *, validate: bool = True
) -> None:
    """:func:`decode_into`, and also write the keep-mask as 0/1 into ``mask`` (if given).

    A bitmask tensor is unpacked once for both; ``mask`` may have any dtype (a float mask
    buffer is filled directly, without a bool intermediate tensor). ``out`` and ``mask``
    may live on any device (each its own): targets that are not contiguous CPU memory are
    decoded into CPU memory first and copied over.

    Args:
        enc: the encoded tensor.
        out: where the dense value goes.
        mask: where the keep-mask goes (as 0/1 in its dtype), or None.
        validate: check the parts first (see :func:`decode_into`).

    Raises:
        FormatError: inconsistent parts, or ``out`` / ``mask`` of another shape.
    """
    enc = on_host(enc)
    if validate:
        validate_encoded(enc)
    for target in (out, mask):
        if target is not None and tuple(target.shape) != enc.shape:
            raise FormatError(
                f"cannot decode a {list(enc.shape)} tensor into {list(target.shape)}"
            )
    if not _writable_here(out) or (mask is not None and not _writable_here(mask)):
        fresh = empty_like_numpy(enc.shape, out.dtype)
        fresh_mask = None if mask is None else empty_like_numpy(enc.shape, mask.dtype)
        decode_masked_into(enc, fresh, fresh_mask, validate=False)
        out.copy_(fresh)
        if mask is not None and fresh_mask is not None:
            mask.copy_(fresh_mask)
        return
    values = enc.parts["values"].to(out.dtype)
    flat_mask = None if mask is None else mask.view(-1)
    if enc.format == "bitmask":
        _bitmask_into(out.view(-1), enc.parts["bits"].numpy(), values, flat_mask)
        return
    if enc.format == "gaps":
        if kernels.gaps_usable(out, mask):
            kernels.gaps_into(enc.parts["gaps"], values, out, mask)
        else:
            _positions_into(out.view(-1), gap_positions(enc.parts["gaps"]), values, flat_mask)
        return
    if enc.format == "dense":
        out.copy_(values)
    elif enc.format == "csr":
        out.zero_()
        rows, cols = matrix_shape(enc.shape)
        out.view(rows, cols).index_put_(_csr_coordinates(enc), values)
    else:
        out.zero_()
        position = nm_positions(enc)
        out.view(position.shape[0], -1).scatter_(1, position, values.view(position.shape[0], -1))
    if mask is not None:
        mask.copy_(keep_mask(enc, validate=False))


def csr_parts(
    enc: Encoded, *, validate: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(crow, col, values)`` (int32 indices, CPU tensors) of a ``bitmask``, ``gaps`` or
    ``csr`` tensor of at least 2 dims, without a dense intermediate; None for other formats.

    The kept entries become the CSR entries, row by row in ascending column order (what
    ``to_sparse_csr`` gives for a tensor whose kept entries are its nonzeros).

    Raises:
        FormatError: inconsistent parts.
    """
    enc = on_host(enc)
    if validate:
        validate_encoded(enc)
    if enc.format not in ("bitmask", "gaps", "csr") or len(enc.shape) < 2:
        return None
    values = enc.parts["values"].clone()
    if enc.format == "csr":
        return enc.parts["crow"].clone(), enc.parts["col"].clone(), values
    rows, cols = matrix_shape(enc.shape)
    if enc.format == "gaps" and kernels.available() and rows * cols <= INT32_MAX:
        return (*kernels.gaps_csr(enc.parts["gaps"], values.numel(), rows, cols), values)
    position = _kept_positions(enc)  # ascending flat positions: row-major CSR order
    index_type = np.int32 if rows * cols <= INT32_MAX else np.int64
    position = position.astype(index_type)
    crow = np.searchsorted(position, np.arange(rows + 1, dtype=index_type) * cols)
    position -= np.repeat(np.arange(rows, dtype=index_type) * cols, np.diff(crow))
    return (
        torch.from_numpy(crow.astype(np.int32)),
        torch.from_numpy(position.astype(np.int32, copy=False)),
        values,
    )


def _kept_positions(enc: Encoded) -> np.ndarray:
    """Ascending flat positions of the kept entries of a ``bitmask`` or ``gaps`` tensor."""
    if enc.format == "gaps":
        return gap_positions(enc.parts["gaps"])
    bits = np.unpackbits(enc.parts["bits"].numpy(), count=math.prod(enc.shape))
    return np.flatnonzero(bits.view(bool))


def keep_mask(enc: Encoded, *, validate: bool = True) -> torch.Tensor:
    """The keep-mask (True = kept, a CPU tensor) an encoding records (nonzeros for
    ``dense``)."""
    enc = on_host(enc)
    if validate:
        validate_encoded(enc)
    numel = math.prod(enc.shape)
    if enc.format == "dense":
        values = enc.parts["values"]
        if not values.is_floating_point():
            return torch.ones(enc.shape, dtype=torch.bool)
        return values != 0
    if "bits" in enc.parts:
        return unpack_bits(enc.parts["bits"], numel).reshape(enc.shape)
    if enc.format == "gaps":
        keep = torch.zeros(numel, dtype=torch.bool)
        keep[torch.from_numpy(gap_positions(enc.parts["gaps"]))] = True
        return keep.reshape(enc.shape)
    if enc.format == "csr":
        rows, cols = matrix_shape(enc.shape)
        keep = torch.zeros(rows, cols, dtype=torch.bool)
        keep[_csr_coordinates(enc)] = True
        return keep.reshape(enc.shape)
    position = nm_positions(enc)
    keep = torch.zeros(position.shape[0], enc.params["m"], dtype=torch.bool)
    return keep.scatter_(1, position, True).reshape(enc.shape)


def decode(enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense tensor and keep-mask (CPU tensors) of an encoded tensor (inverse of ``encode``).

    Raises:
        FormatError: the parts are inconsistent with the format and shape (corrupt file).
    """
    enc = on_host(enc)
    validate_encoded(enc)
    out = torch.empty(enc.shape, dtype=enc.parts["values"].dtype)
    decode_into(enc, out, validate=False)
    return out, keep_mask(enc, validate=False)
