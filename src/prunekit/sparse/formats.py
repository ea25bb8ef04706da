"""Compact storage formats for a pruned tensor, each with an exact round trip to dense.

A tensor is stored as named *parts* (plain dense tensors that safetensors can hold) plus a
small JSON-able description. The kept positions are given by a keep-mask (True = kept); a
kept weight may itself be 0.0, so the mask of a masked model survives the round trip.

Formats (``T`` = the tensor viewed as ``(rows, cols)``: ``rows = shape[0]``, ``cols`` = the
rest flattened; ``nnz`` = kept entries; ``b`` = bytes per value):

- ``dense``: the tensor itself. ``numel * b`` bytes.
- ``bitmask``: one bit per entry (row-major, ``numpy.packbits``) + kept values.
  ``ceil(numel / 8) + nnz * b`` bytes; smallest from about 12.5% to about 95% density.
- ``gaps``: the kept entries' flat (row-major) positions as the distance from the previous
  kept entry (the first: its position + 1), one ``uint8`` code each, + kept values. A
  distance over 255 is preceded by escape codes (``0``: skip 255 entries, no value).
  ``nnz * (1 + b) + escapes`` bytes; smallest below about 12.5% density. Decoding is a
  running sum, much cheaper than finding the set bits of a bitmask, so high-sparsity
  models also load faster.
- ``csr``: compressed sparse rows with int32 indices. ``(rows + 1) * 4 + nnz * (4 + b)``
  bytes; smallest only when kept entries lie thousands of entries apart.
- ``nm``: N:M compressed: in every group of ``m`` consecutive entries of a row, exactly
  ``n`` stored values and their in-group positions packed in ``ceil(log2 m)`` bits each.
  ``rows * cols / m * n * (b + bits / 8)`` bytes (2:4 fp16: 0.5625x of dense).

:func:`choose_format` picks the smallest one that applies; :mod:`.decode` inverts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import FormatError

FORMATS = ("dense", "bitmask", "gaps", "csr", "nm")
_TIE_ORDER = ("dense", "nm", "bitmask", "gaps", "csr")  # on equal size: simplest, then N:M layout
NM_GROUP_SIZES = (4, 8, 16)
INT32_MAX = 2**31 - 1
GAP_ESCAPE = 255  # entries a 0 code skips; the largest distance one code holds


@dataclass(frozen=True)
class Encoded:
    """A tensor in one storage format.

    Attributes:
        format: one of :data:`FORMATS`.
        shape: the logical (dense) shape.
        parts: part name -> plain tensor (``values``, ``bits``, ``gaps``, ``crow``, ``col``,
            ``index``).
        params: format parameters (``{"n": 2, "m": 4}`` for ``nm``), JSON values only.
    """

    format: str
    shape: tuple[int, ...]
    parts: dict[str, torch.Tensor]
    params: dict[str, int]

    @property
    def nbytes(self) -> int:
        """Bytes of all parts."""
        return sum(p.numel() * p.element_size() for p in self.parts.values())


def on_host(enc: Encoded) -> Encoded:
    """``enc`` with every part in CPU memory (itself if they all are already), so the
    numpy code that reads parts never sees a device tensor."""
    if all(part.device.type == "cpu" for part in enc.parts.values()):
        return enc
    parts = {name: part.cpu() for name, part in enc.parts.items()}
    return Encoded(enc.format, enc.shape, parts, enc.params)


def nm_positions(enc: Encoded) -> torch.Tensor:
    """In-group positions ``(groups, n)`` (int64, CPU) of an ``nm``-encoded tensor: the
    inverse of the ``index`` packing in :func:`encode`."""
    n, m = enc.params["n"], enc.params["m"]
    width = math.ceil(math.log2(m))
    groups = math.prod(enc.shape) // m
    if n == 0:
        return torch.zeros(groups, 0, dtype=torch.int64)
    flat = np.unpackbits(enc.parts["index"].cpu().numpy(), count=groups * n * width)
    bits = flat.reshape(groups * n, width)  # msb first
    weights = (1 << np.arange(width - 1, -1, -1)).astype(np.int64)
    return torch.from_numpy(bits.astype(np.int64) @ weights).reshape(groups, n)


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The ``(rows, cols)`` view every sparse format uses: first dim x the rest."""
    if len(shape) == 0:
        return 1, 1
    return shape[0], math.prod(shape[1:])


def _pack_bits(bits: torch.Tensor) -> torch.Tensor:
    packed = np.packbits(bits.detach().cpu().numpy().astype(bool).ravel())
    return torch.from_numpy(packed)


def kept_gaps(keep: torch.Tensor) -> np.ndarray:
    """Distances between consecutive kept flat positions (the first: its position + 1),
    as int64; empty if nothing is kept."""
    position = np.flatnonzero(keep.detach().cpu().numpy().ravel())
    return np.diff(position, prepend=-1)


def _gap_escapes(gaps: np.ndarray) -> np.ndarray:
    """Escape codes needed before each distance (each skips :data:`GAP_ESCAPE` entries)."""
    return (gaps - 1) // GAP_ESCAPE


def gap_codes(keep: torch.Tensor) -> np.ndarray:
    """The ``gaps`` part (uint8) for a keep-mask: per kept entry, its escapes then its code."""
    gaps = kept_gaps(keep)
    escapes = _gap_escapes(gaps)
    codes = np.zeros(gaps.size + int(escapes.sum()), dtype=np.uint8)
    codes[np.cumsum(escapes + 1) - 1] = gaps - escapes * GAP_ESCAPE
    return codes


def group_counts(keep: torch.Tensor) -> dict[int, torch.Tensor]:
    """``{m: kept entries in every group of m consecutive entries of a row}`` (int32) for
    each ``m`` in :data:`NM_GROUP_SIZES` that divides the row length."""
    _, cols = matrix_shape(tuple(keep.shape))
    if keep.dim() < 2 or cols % NM_GROUP_SIZES[0] != 0 or keep.numel() == 0:
        return {}
    flat = keep.detach().cpu().contiguous().view(-1).view(torch.uint8)
    if flat.storage_offset() % 4:
        flat = flat.clone()  # an int32 view needs aligned storage
    words = flat.view(torch.int32)
    counts = (words + (words >> 8) + (words >> 16) + (words >> 24)) & 0xFF  # 4 bools a word
    found = {4: counts}
    for m in NM_GROUP_SIZES[1:]:
        if cols % m:
            break
        counts = counts[0::2] + counts[1::2]  # two groups of m/2 -> one of m
        found[m] = counts
    return found


def _nm_choice(counts: dict[int, torch.Tensor]) -> tuple[int, int, int] | None:
    """``(n, m, smallest group count)`` of the cheapest N:M layout, or None if none saves."""
    best: tuple[int, int, int] | None = None
    best_cost = math.inf
    for m, per_group in counts.items():
        n = int(per_group.max())
        cost = n * (1.0 + math.ceil(math.log2(m)) / 32) / m  # per entry, fp32 values
        if n < m and cost < best_cost:
            best, best_cost = (n, m, int(per_group.min())), cost
    return best


def nm_pattern(keep: torch.Tensor) -> tuple[int, int] | None:
    """The smallest-storage ``(n, m)`` such that no group of ``m`` keeps more than ``n``.

    Returns None when no group size in :data:`NM_GROUP_SIZES` saves storage.
    """
    choice = _nm_choice(group_counts(keep))
    return None if choice is None else choice[:2]


def format_sizes(
    keep: torch.Tensor, itemsize: int, record_mask: bool = True
) -> dict[str, int | None]:
    """Bytes each format would take for a tensor with keep-mask ``keep`` (None: cannot).

    Args:
        keep: keep-mask (True = kept).
        itemsize: bytes per value.
        record_mask: the mask itself must survive (an N:M group keeping fewer than ``n``
            then needs the bitmask too).
    """
    numel = keep.numel()
    nnz = int(torch.count_nonzero(keep))
    rows, cols = matrix_shape(tuple(keep.shape))
    bitmask = (numel + 7) // 8
    sizes: dict[str, int | None] = {"dense": numel * itemsize, "bitmask": bitmask + nnz * itemsize}
    sizes["gaps"] = nnz * (1 + itemsize) + int(_gap_escapes(kept_gaps(keep)).sum())
    csr_ok = keep.dim() >= 2 and nnz <= INT32_MAX and cols <= INT32_MAX
    sizes["csr"] = (rows + 1) * 4 + nnz * (4 + itemsize) if csr_ok else None
    choice = _nm_choice(group_counts(keep))
    if choice is None:
        sizes["nm"] = None
    else:
        n, m, fewest = choice
        stored = numel // m * n
        extra = bitmask if record_mask and fewest < n else 0
        sizes["nm"] = stored * itemsize + (stored * math.ceil(math.log2(m)) + 7) // 8 + extra
    return sizes


def format_bytes(
    fmt: str, keep: torch.Tensor, itemsize: int, record_mask: bool = True
) -> int | None:
    """Bytes ``fmt`` would take for a tensor with keep-mask ``keep``; None if it cannot
    (see :func:`format_sizes`)."""
    if fmt not in FORMATS:
        raise FormatError(f"unknown storage format {fmt!r}", f"choose one of {FORMATS}")
    return format_sizes(keep, itemsize, record_mask)[fmt]


def choose_format(tensor: torch.Tensor, keep: torch.Tensor | None = None) -> str:
    """The smallest format for ``tensor`` (dense for non-float tensors and ties).

    Args:
        tensor: the dense tensor to store.
        keep: keep-mask (True = kept); defaults to the tensor's nonzeros.

    Returns:
        One of :data:`FORMATS`.

    Example:
        >>> choose_format(torch.tensor([[0.0, 0.0, 0.0, 1.5]] * 8))  # 1 of every 4 kept
        'nm'
        >>> w = torch.zeros(64, 64)
        >>> w[::2, ::3] = 1.0  # 17% kept, no N:M pattern
        >>> choose_format(w)
        'bitmask'
        >>> w = torch.zeros(64, 64)
        >>> w[::3, ::7] = 1.0  # 5% kept
        >>> choose_format(w)
        'gaps'
        >>> w = torch.zeros(4, 100_000)
        >>> w[0, 0] = w[3, -1] = 1.0  # 2 kept, 400k apart
        >>> choose_format(w)
        'csr'
    """
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return "dense"
    record_mask = keep is not None
    keep = tensor != 0 if keep is None else keep
    itemsize = tensor.element_size()
    costs = format_sizes(keep, itemsize, record_mask)
    valid = {fmt: cost for fmt, cost in costs.items() if cost is not None}
    return min(valid, key=lambda fmt: (valid[fmt], _TIE_ORDER.index(fmt)))


def encode(tensor: torch.Tensor, fmt: str, keep: torch.Tensor | None = None) -> Encoded:
    """Store ``tensor`` in format ``fmt``.

    Args:
        tensor: dense tensor; entries outside ``keep`` must be zero.
        fmt: one of :data:`FORMATS`.
        keep: keep-mask (True = kept) that :func:`decode` must give back exactly (a masked
            model's mask); None = only the values matter.

    Returns:
        The :class:`Encoded` tensor; ``decode(encode(t, f)) == t`` exactly (see :mod:`.decode`).

    Raises:
        FormatError: ``fmt`` is unknown or does not apply to this tensor.
    """
    tensor = tensor.detach().cpu().contiguous()
    shape = tuple(tensor.shape)
    explicit = keep is not None
    if fmt == "dense":
        return Encoded("dense", shape, {"values": tensor.clone()}, {})
    keep = (tensor != 0) if keep is None else keep.detach().cpu().bool()
    if tuple(keep.shape) != shape:
        raise FormatError(f"keep-mask shape {tuple(keep.shape)} != tensor shape {shape}")
    if bool((tensor[~keep] != 0).any()):
        raise FormatError("the tensor has nonzero entries outside its keep-mask")
    if format_bytes(fmt, keep, tensor.element_size(), explicit) is None:
        raise FormatError(f"format {fmt!r} does not apply to a tensor of shape {shape}")
    if fmt == "bitmask":
        return Encoded(fmt, shape, {"bits": _pack_bits(keep), "values": tensor[keep]}, {})
    if fmt == "gaps":
        gaps = torch.from_numpy(gap_codes(keep))
        return Encoded(fmt, shape, {"gaps": gaps, "values": tensor[keep]}, {})
    if fmt == "csr":
        return _encode_csr(tensor, keep)
    return _encode_nm(tensor, keep, record_mask=explicit)


def _encode_csr(tensor: torch.Tensor, keep: torch.Tensor) -> Encoded:
    rows, cols = matrix_shape(tuple(tensor.shape))
    keep2d = keep.reshape(rows, cols)
    row_counts = keep2d.sum(dim=1)
    crow = torch.zeros(rows + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(row_counts, 0)
    col = keep2d.nonzero()[:, 1]  # row-major order, so grouped by row
    parts = {
        "crow": crow.to(torch.int32),
        "col": col.to(torch.int32),
        "values": tensor.reshape(rows, cols)[keep2d],
    }
    return Encoded("csr", tuple(tensor.shape), parts, {})


def _encode_nm(tensor: torch.Tensor, keep: torch.Tensor, record_mask: bool) -> Encoded:
    pattern = nm_pattern(keep)
    assert pattern is not None, "format_bytes checked the pattern"
    n, m = pattern
    groups = keep.reshape(-1, m)
    # Pad each group to exactly n stored positions: kept first, then unkept (value 0).
    order = torch.argsort((~groups).to(torch.int8), dim=1, stable=True)[:, :n]  # (G, n)
    position = order.sort(dim=1).values
    values = tensor.reshape(-1, m).gather(1, position)  # (G, n)
    width = math.ceil(math.log2(m))
    index = position.to(torch.uint8).numpy()[:, :, None]
    bits = np.unpackbits(index, axis=2)[:, :, 8 - width :]  # (G, n, width), msb first
    parts = {"values": values.reshape(-1), "index": torch.from_numpy(np.packbits(bits.ravel()))}
    # A padded position (value 0) is told apart from a kept 0 only if a mask must survive.
    if record_mask and bool((~groups.gather(1, position)).any()):
        parts["bits"] = _pack_bits(keep)
    return Encoded("nm", tuple(tensor.shape), parts, {"n": n, "m": m})


def describe(enc: Encoded) -> dict[str, Any]:
    """JSON description of an encoded tensor (without its data)."""
    return {"format": enc.format, "shape": list(enc.shape), "params": dict(enc.params)}
