"""``load``: rebuild the original architecture, apply the artefact's shapes, load strictly."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from ..errors import FormatError, SpecError, UnsupportedModelError
from ..plan import Plan
from ..sparse.convert import apply_kernels, check_kernels
from ..sparse.decode import decode, decode_into, keep_mask
from ..sparse.formats import Encoded
from ..sparse.validate import _PARTS, validate_encoded
from .manifest import WEIGHTS_FILE, Manifest, TensorEntry, read_manifest
from .refs import build_from_ref
from .save import dtype_name, file_key
from .state import restore_masks

Stored = dict[str, Encoded]


def _check_file(path: Path, manifest: Manifest, verify: bool) -> None:
    if not path.is_file():
        raise FormatError(f"{path} is missing", "the artefact folder is incomplete; save it again")
    size = path.stat().st_size
    if size != manifest.weights.get("bytes"):
        raise FormatError(
            f"{path} has {size} bytes, the manifest says {manifest.weights.get('bytes')}",
            "the weights file is truncated or replaced; save it again",
        )
    if verify:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != manifest.weights["sha256"]:
            raise FormatError(
                f"{path} does not match the checksum in the manifest",
                "the weights file is corrupt or was modified; save it again",
            )


def _expected_keys(name: str, entry: TensorEntry, present: set[str]) -> set[str]:
    required, optional = _PARTS[entry.format]
    keys = {file_key(name, part, entry.format) for part in required}
    return keys | {k for part in optional if (k := file_key(name, part, entry.format)) in present}


def _read_parts(path: Path, manifest: Manifest) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            present = set(handle.keys())
            expected: set[str] = set()
            for name, entry in manifest.tensors.items():
                expected |= _expected_keys(name, entry, present)
            missing, extra = sorted(expected - present), sorted(present - expected)
            if missing or extra:
                raise FormatError(
                    f"{path}: tensors missing {missing[:5]}, unexpected {extra[:5]}",
                    "the weights file does not belong to this manifest; save again",
                )
            return {key: handle.get_tensor(key) for key in present}
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise FormatError(
            f"cannot read {path}: {type(exc).__name__}: {exc}",
            "the weights file is corrupt or truncated; save it again",
        ) from exc


def read_tensors(
    path: str | Path, manifest: Manifest | None = None, verify: bool = True
) -> dict[str, Encoded]:
    """``{state-dict key: Encoded}`` of a saved artefact, every part validated.

    Raises:
        FormatError: anything in the files that does not fit the manifest.
    """
    manifest = read_manifest(path) if manifest is None else manifest
    weights = Path(path) / WEIGHTS_FILE
    _check_file(weights, manifest, verify)
    parts = _read_parts(weights, manifest)
    encoded = {}
    for name, entry in manifest.tensors.items():
        required, optional = _PARTS[entry.format]
        own = {
            part: parts[key]
            for part in required | optional
            if (key := file_key(name, part, entry.format)) in parts
        }
        enc = Encoded(entry.format, entry.shape, own, entry.params)
        validate_encoded(enc)
        stored = dtype_name(own["values"].dtype)
        if stored != entry.dtype:
            raise FormatError(
                f"tensor {name!r}: stored {stored}, manifest says {entry.dtype}",
                "the weights file does not belong to this manifest; save it again",
            )
        encoded[name] = enc
    return encoded


def _build(
    manifest: Manifest, build: Callable[[], nn.Module] | nn.Module | None, allow_import: bool
) -> nn.Module:
    if build is None:
        return build_from_ref(manifest.model, allow_import)
    if isinstance(build, nn.Module):
        return build
    try:
        model = build()
    except Exception as exc:  # noqa: BLE001 - user code
        raise FormatError(f"build() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise FormatError(f"build() returned {type(model).__name__}, not an nn.Module")
    return model


def _rebuild_physical(model: nn.Module, manifest: Manifest) -> None:
    if "physical" not in manifest.end_state:
        return
    try:
        from ..apply.surgery.rebuild import rebuild_pruned_architecture
    except ImportError as exc:
        raise UnsupportedModelError(
            "this prunekit cannot rebuild structured-pruned models",
            "install a prunekit with structured pruning",
        ) from exc
    plan = Plan.from_dict(manifest.plan or {})
    # The stored tensors' shapes are the truth; they fill any shape the plan does not list.
    plan.shapes = {**{k: list(t.shape) for k, t in manifest.tensors.items()}, **plan.shapes}
    rebuild_pruned_architecture(model, plan)


def _check_fits(model: nn.Module, stored: Stored) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    wrong = [
        f"{k}: model {list(expected[k])} vs file {list(stored[k].shape)}"
        for k in sorted(set(expected) & set(stored))
        if expected[k] != stored[k].shape
    ]
    if missing or extra or wrong:
        raise FormatError(
            "the model built for this artefact does not match it: "
            f"missing in file {missing[:5]}, not in model {extra[:5]}, shape mismatch {wrong[:5]}",
            "pass build= a factory of the original, unpruned architecture",
        )


def _match_dtype(model: nn.Module, stored: Stored) -> None:
    """Cast the model to the saved float dtype when the file holds a single one."""
    values = [enc.parts["values"] for enc in stored.values()]
    float_dtypes = {v.dtype for v in values if v.is_floating_point()}
    if len(float_dtypes) == 1:
        model.to(float_dtypes.pop())


def _load_strict(model: nn.Module, stored: Stored) -> None:
    """Write every stored tensor into the model (all keys and shapes already checked).

    Parameters and buffers are decoded in place (no temporary dense copy); any other
    state-dict entry goes through ``load_state_dict``.
    """
    own: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
    own.update(model.named_buffers(remove_duplicate=False))
    rest = {}
    with torch.no_grad():
        for name, enc in stored.items():
            target = own.get(name)
            if target is not None and target.dtype == enc.parts["values"].dtype:
                decode_into(enc, target)
            else:
                rest[name] = decode(enc)[0]
    if rest:
        try:
            model.load_state_dict(rest, strict=False)
        except RuntimeError as exc:
            raise FormatError(f"the weights do not load into the model: {exc}") from exc


def load(
    path: str | Path,
    build: Callable[[], nn.Module] | nn.Module | None = None,
    *,
    allow_import: bool = False,
    verify: bool = True,
) -> nn.Module:
    """Load an artefact written by :func:`save`, in the end state it was saved in.

    Rebuilds the original architecture (``build`` or the recorded zoo / torchvision /
    Hugging Face reference), applies the recorded structured changes, loads every tensor
    strictly, then restores masks and sparse layers. Nothing is executed from the files.

    Args:
        path: the artefact folder.
        build: zero-argument factory of the original (unpruned) model, or such a model.
        allow_import: allow ``package.module:factory`` references, which import code.
        verify: check the weights file's SHA-256 against the manifest.

    Returns:
        The model; its outputs equal those of the saved model.

    Raises:
        FormatError: corrupt, truncated or edited files, a newer format version, missing or
            extra tensors, or a model that does not fit.
        UnsupportedModelError: a reference that would run code without ``allow_import``.

    Example:
        >>> import prunekit as pk, tempfile, os, torch
        >>> result = pk.prune(pk.zoo.build("mlp"), pk.Unstructured(sparsity=0.9))
        >>> folder = pk.save(result, os.path.join(tempfile.mkdtemp(), "mlp90"))
        >>> x = pk.zoo.example_inputs("mlp")
        >>> torch.equal(pk.load(folder)(x), result.model(x))
        True
    """
    manifest = read_manifest(path)
    stored = read_tensors(path, manifest, verify)
    model = _build(manifest, build, allow_import)
    _rebuild_physical(model, manifest)
    _check_fits(model, stored)
    try:
        check_kernels(model, manifest.sparse_modules)
    except SpecError as exc:
        raise FormatError(f"manifest sparse_modules: {exc.message}", exc.hint) from exc
    _match_dtype(model, stored)
    _load_strict(model, stored)
    apply_kernels(model, manifest.sparse_modules)
    masked = {k: keep_mask(enc) for k, enc in stored.items() if manifest.tensors[k].masked}
    restore_masks(model, masked)
    return model
