"""Writing one safetensors file a few tensors at a time.

Unstructured pruning keeps every tensor's name, shape and dtype, so the file's header (and
with it every tensor's place in the file) is known before the first block is pruned. The
header is written first; each tensor's bytes go to their place as soon as they are final;
the checksums are computed by reading the finished file back in chunks (plain reads: the
file never enters the process's memory whole).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import torch
import xxhash

from ..errors import InternalError
from .source import DTYPES

_NAMES = {dtype: name for name, dtype in DTYPES.items()}
HEADER_ALIGN = 8
CHUNK_BYTES = 16 << 20


def plan_layout(
    entries: Mapping[str, tuple[torch.dtype, tuple[int, ...]]],
) -> dict[str, tuple[int, int]]:
    """``{name: (begin, end)}`` data offsets: widest dtypes first, then by name (every
    tensor starts aligned to its element size, as safetensors' own writer arranges)."""
    order = sorted(entries, key=lambda k: (-entries[k][0].itemsize, k))
    offsets, at = {}, 0
    for name in order:
        dtype, shape = entries[name]
        size = dtype.itemsize * int(torch.Size(shape).numel())
        offsets[name] = (at, at + size)
        at += size
    return offsets


class TensorFileWriter:
    """A safetensors file whose tensors are written one by one, in any order.

    Args:
        path: the file to create.
        entries: ``{name: (dtype, shape)}`` of every tensor the file will hold.
        metadata: the header's ``__metadata__`` (string values).
    """

    def __init__(self, path: Path, entries: Mapping[str, tuple[torch.dtype, tuple[int, ...]]],
                 metadata: Mapping[str, str]) -> None:
        self.path = path
        self.entries = dict(entries)
        self.offsets = plan_layout(self.entries)
        header: dict[str, object] = {"__metadata__": dict(metadata)}
        for name, (begin, end) in sorted(self.offsets.items(), key=lambda kv: kv[1]):
            dtype, shape = self.entries[name]
            header[name] = {"dtype": _NAMES[dtype], "shape": list(shape),
                            "data_offsets": [begin, end]}
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % HEADER_ALIGN)
        self.data_start = 8 + len(raw)
        total = max((end for _, end in self.offsets.values()), default=0)
        self.written: set[str] = set()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self._write_at(struct.pack("<Q", len(raw)) + raw, 0)
        os.ftruncate(self.fd, self.data_start + total)

    def _write_at(self, data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            done = os.pwrite(self.fd, view, offset)
            view, offset = view[done:], offset + done

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Write one tensor (moved to the CPU and cast to its planned dtype).

        Raises:
            InternalError: an unplanned name or shape, or a name written twice.
        """
        if name not in self.entries or name in self.written:
            raise InternalError(f"tensor {name!r} is not planned or already written")
        dtype, shape = self.entries[name]
        if tuple(tensor.shape) != tuple(shape):
            raise InternalError(f"tensor {name!r} has shape {list(tensor.shape)}, "
                                f"planned {list(shape)}")
        value = tensor.detach().to(device="cpu", dtype=dtype).contiguous().reshape(-1)
        if value.numel():
            self._write_at(value.view(torch.uint8).numpy().data, self.data_start
                           + self.offsets[name][0])
        self.written.add(name)

    def close(self) -> None:
        """Flush and close the file.

        Raises:
            InternalError: a planned tensor was never written.
        """
        try:
            missing = sorted(set(self.entries) - self.written)
            if missing:
                raise InternalError(f"tensors planned but never written: {missing[:5]}")
            os.fsync(self.fd)
        finally:
            os.close(self.fd)

    def __enter__(self) -> TensorFileWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            os.close(self.fd)


def file_digests(path: Path) -> dict[str, str]:
    """``{"xxh3_64", "crc32", "sha256"}`` hex digests of a file, read in chunks."""
    xxh, sha, crc = xxhash.xxh3_64(), hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            xxh.update(chunk)
            sha.update(chunk)
            crc = zlib.crc32(chunk, crc)
    return {"xxh3_64": xxh.hexdigest(), "crc32": f"{crc:08x}", "sha256": sha.hexdigest()}
