"""A Hugging Face model folder on disk: its config and an index of its safetensors shards.

Only the shards' headers are read to build the index (names, dtypes, shapes); tensors are
read on demand, a few at a time, each shard opened only while its tensors are copied out,
so the mapped file pages never pile up in the process's memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import FormatError

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_HINT = "pass a folder written by save_pretrained (config.json and *.safetensors weights)"


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor of the checkpoint lives, and what it is."""

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]


def check_folder(folder: Path) -> None:
    """Raise unless ``folder`` is a folder holding ``config.json``.

    Raises:
        FormatError: naming what is missing.
    """
    if not folder.is_dir():
        raise FormatError(f"{folder} is not a folder", _HINT)
    if not (folder / CONFIG_FILE).is_file():
        raise FormatError(f"{folder} has no {CONFIG_FILE}", _HINT)


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files holding the weights: the index's shards, or the single file.

    Raises:
        FormatError: no safetensors weights, an unreadable index, or a shard it names missing.
    """
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted({str(v) for v in weight_map.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"{index} is not a safetensors index: {exc}", _HINT) from exc
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise FormatError(f"{index} names shards that are missing: {missing[:3]}",
                              "copy the whole checkpoint folder")
        return [folder / n for n in names]
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    others = sorted(p.name for p in folder.glob("*.bin")) + sorted(
        p.name for p in folder.glob("*.pt"))
    found = f" (found {others[:3]}: pickle weights are not read)" if others else ""
    raise FormatError(f"{folder} has no {SINGLE_FILE} or {INDEX_FILE}{found}",
                      "save the model with save_pretrained(safe_serialization=True)")


def _read_header(file: Path) -> dict[str, StoredTensor]:
    found = {}
    try:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                part = handle.get_slice(key)
                dtype = DTYPES.get(part.get_dtype())
                if dtype is None:
                    raise FormatError(f"{file.name}: tensor {key!r} has dtype "
                                      f"{part.get_dtype()}, which is not supported")
                found[key] = StoredTensor(file, dtype, tuple(int(d) for d in part.get_shape()))
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise FormatError(f"cannot read {file}: {type(exc).__name__}: {exc}",
                          "the shard is corrupt or truncated; copy it again") from exc
    return found


def index_folder(folder: Path) -> dict[str, StoredTensor]:
    """``{tensor name: StoredTensor}`` over every shard of a checkpoint folder.

    Raises:
        FormatError: no config, no weights, an unreadable shard, or a name in two shards.
    """
    check_folder(folder)
    index: dict[str, StoredTensor] = {}
    for file in shard_files(folder):
        for key, stored in _read_header(file).items():
            if key in index:
                raise FormatError(f"tensor {key!r} is in both {index[key].file.name} and "
                                  f"{file.name}", "the checkpoint folder mixes two models")
            index[key] = stored
    return index


def read_stored(index: dict[str, StoredTensor], keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """Read ``keys`` (stored names) into CPU memory, opening each shard once for them.

    Raises:
        FormatError: a shard cannot be read.
    """
    by_file: dict[Path, list[str]] = {}
    for key in keys:
        by_file.setdefault(index[key].file, []).append(key)
    out = {}
    for file, names in by_file.items():
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in names:
                    out[name] = handle.get_tensor(name)
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise FormatError(f"cannot read {file}: {type(exc).__name__}: {exc}",
                              "the shard is corrupt or truncated; copy it again") from exc
    return out
