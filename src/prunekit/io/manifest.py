"""The JSON manifest of a saved artefact: what every tensor is and how to rebuild the model.

Layout (``format_version`` 1)::

    {"format": "prunekit", "format_version": 1,
     "end_state": ["masked"],                       # dense | masked | sparse | physical
     "model": {"ref": "zoo:mlp", "class": "torch.nn...Sequential", "config": null},
     "spec": {...} | null,                          # the spec that pruned it
     "plan": {...} | null,                          # Plan.to_dict() without masks
     "tensors": {"1.weight": {"format": "bitmask", "shape": [256, 784], "dtype": "float32",
                              "params": {}, "masked": true, "stored_bytes": 204912}},
     "sparse_modules": {"1": "csr"},                # layers that run a sparse kernel
     "weights": {"file": "model.safetensors", "bytes": 123, "sha256": "...",
                 "crc32": "1a2b3c4d",                 # optional: older artefacts lack
                 "xxh3_64": "0123456789abcdef"},      # one or both (then sha256 is used)
     "versions": {"prunekit": "0.1.0", "torch": "2.14.1", "safetensors": "0.8.0"}}

Masks are not stored twice: a masked tensor's mask is the kept-position structure of its
storage format (bitmask bits, CSR indices, N:M positions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..sparse.formats import FORMATS

FORMAT_NAME = "prunekit"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "model.safetensors"
DIGEST_HEX_DIGITS = {"xxh3_64": 16, "crc32": 8, "sha256": 64}  # checksums of the weights file
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
END_STATES = ("dense", "masked", "sparse", "physical")
DTYPES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)


@dataclass(frozen=True)
class TensorEntry:
    """How one logical tensor (a state-dict key) is stored."""

    format: str
    shape: tuple[int, ...]
    dtype: str
    params: dict[str, int]
    masked: bool
    stored_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "params": dict(self.params),
            "masked": self.masked,
            "stored_bytes": self.stored_bytes,
        }


@dataclass
class Manifest:
    """The parsed, validated manifest (see the module docstring)."""

    end_state: list[str]
    model: dict[str, Any]
    spec: dict[str, Any] | None
    plan: dict[str, Any] | None
    tensors: dict[str, TensorEntry]
    sparse_modules: dict[str, str]
    weights: dict[str, Any]
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "end_state": list(self.end_state),
            "model": dict(self.model),
            "spec": self.spec,
            "plan": self.plan,
            "tensors": {k: t.to_dict() for k, t in self.tensors.items()},
            "sparse_modules": dict(self.sparse_modules),
            "weights": dict(self.weights),
            "versions": dict(self.versions),
        }

    def to_json(self) -> str:
        """Compact JSON (it counts in the artefact's bytes; `prunekit inspect` reads it)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)


def _bad(problem: str) -> FormatError:
    return FormatError(f"manifest: {problem}", "the manifest is corrupt or hand-edited; save again")


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise _bad(f"{where} lacks {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int,))):
        raise _bad(f"{where}.{key} has type {type(value).__name__}")
    return value


def _int_list(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in value
    ):
        raise _bad(f"{where} must be a list of non-negative integers")
    return tuple(value)


def _parse_tensor(name: str, data: Any) -> TensorEntry:
    where = f"tensors[{name!r}]"
    if not isinstance(data, dict):
        raise _bad(f"{where} must be an object")
    fmt = _require(data, "format", str, where)
    if fmt not in FORMATS:
        raise _bad(f"{where}.format {fmt!r} is not one of {FORMATS}")
    dtype = _require(data, "dtype", str, where)
    if dtype not in DTYPES:
        raise _bad(f"{where}.dtype {dtype!r} is not one of {DTYPES}")
    params = _require(data, "params", dict, where)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in params.values()):
        raise _bad(f"{where}.params must hold integers")
    masked = _require(data, "masked", bool, where)
    stored = _require(data, "stored_bytes", int, where)
    shape = _int_list(data.get("shape"), f"{where}.shape")
    return TensorEntry(
        fmt, shape, dtype, {str(k): int(v) for k, v in params.items()}, masked, stored
    )


def _optional_dict(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is not None and not isinstance(value, dict):
        raise _bad(f"{key} must be an object or null")
    return value


def parse_manifest(data: Any) -> Manifest:
    """Validate a decoded manifest and return it as a :class:`Manifest`.

    Raises:
        FormatError: not a prunekit manifest, a newer format version, or any field with a
            wrong type or value (the message names it).
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise _bad(f'not a {FORMAT_NAME} manifest ("format" must be {FORMAT_NAME!r})')
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad(f"format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise FormatError(
            f"artefact format version {version} is newer than {FORMAT_VERSION}, the newest known",
            "upgrade prunekit to load artefacts written by a newer version",
        )
    end_state = _require(data, "end_state", list, "manifest")
    if not end_state or not all(s in END_STATES for s in end_state):
        raise _bad(f"end_state {end_state!r} must list values from {END_STATES}")
    model = _require(data, "model", dict, "manifest")
    if model.get("ref") is not None and not isinstance(model["ref"], str):
        raise _bad("model.ref must be a string or null")
    tensors = _require(data, "tensors", dict, "manifest")
    sparse_modules = _require(data, "sparse_modules", dict, "manifest")
    if not all(isinstance(v, str) and v in ("csr", "2:4") for v in sparse_modules.values()):
        raise _bad("sparse_modules values must be 'csr' or '2:4'")
    weights = _require(data, "weights", dict, "manifest")
    if weights.get("file") != WEIGHTS_FILE or not isinstance(weights.get("sha256"), str):
        raise _bad(f"weights must name {WEIGHTS_FILE!r} and carry its sha256")
    for algorithm, digits in DIGEST_HEX_DIGITS.items():
        digest = weights.get(algorithm, "0" * digits)
        if not isinstance(digest, str) or len(digest) != digits or digest.strip("0123456789abcdef"):
            raise _bad(f"weights.{algorithm} must be {digits} lowercase hex digits")
    versions = _require(data, "versions", dict, "manifest")
    return Manifest(
        end_state=[str(s) for s in end_state],
        model=model,
        spec=_optional_dict(data, "spec"),
        plan=_optional_dict(data, "plan"),
        tensors={str(k): _parse_tensor(str(k), v) for k, v in tensors.items()},
        sparse_modules={str(k): str(v) for k, v in sparse_modules.items()},
        weights=weights,
        versions={str(k): str(v) for k, v in versions.items()},
    )


def read_manifest(path: str | Path) -> Manifest:
    """Read and validate ``<path>/manifest.json`` (weights are not read).

    Raises:
        FormatError: missing, unreadable, not JSON, or invalid (see :func:`parse_manifest`).
    """
    file = Path(path) / MANIFEST_FILE
    if not Path(path).is_dir():
        raise FormatError(f"{path} is not an artefact folder", "pass the folder pk.save wrote")
    try:
        if file.stat().st_size > MAX_MANIFEST_BYTES:
            raise _bad(f"{file} is larger than {MAX_MANIFEST_BYTES} bytes")
        text = file.read_text(encoding="utf-8")
        data = json.loads(text)
    except FileNotFoundError as exc:
        raise FormatError(f"{file} is missing", "pass the folder pk.save wrote") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FormatError(f"{file} is not valid JSON: {exc}") from exc
    return parse_manifest(data)
