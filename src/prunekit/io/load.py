"""``load``: rebuild the original architecture, apply the artefact's shapes, load strictly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from ..apply.masks import apply_mask
from ..apply.surgery.rebuild import rebuild_pruned_architecture
from ..errors import FormatError, SpecError
from ..plan import Plan
from ..sparse.convert import apply_kernels, check_kernels
from ..sparse.decode import (
    csr_parts,
    decode,
    decode_into,
    decode_masked_into,
    empty_like_numpy,
    keep_mask,
)
from ..sparse.dispatch import candidate_kernels
from ..sparse.formats import Encoded
from ..sparse.modules import CSRLinear
from ..sparse.validate import _PARTS, validate_encoded
from .manifest import DIGEST_HEX_DIGITS, WEIGHTS_FILE, Manifest, TensorEntry, read_manifest
from .refs import build_from_ref, call_factory
from .save import dtype_name, file_digest, file_key

Stored = dict[str, Encoded]
Masks = dict[str, torch.Tensor]  # key -> keep-mask


def _checksum_to_verify(manifest: Manifest, verify: bool | str) -> str | None:
    """The checksum ``load(verify=...)`` compares: by default the fastest one the manifest
    has (XXH3-64, then CRC-32, then SHA-256 for the oldest artefacts), or the one named;
    none for ``verify=False``."""
    if verify is False:
        return None
    if verify is not True and verify not in DIGEST_HEX_DIGITS:
        names = ", ".join(repr(a) for a in DIGEST_HEX_DIGITS)
        raise SpecError(f"verify must be True, False or one of {names}, got {verify!r}")
    if verify is True:
        return next(a for a in DIGEST_HEX_DIGITS if a in manifest.weights)  # sha256 always is
    if verify not in manifest.weights:
        raise FormatError(
            f"the manifest has no {verify} checksum", "load with verify=True or verify='sha256'"
        )
    return str(verify)


def _check_file(path: Path, manifest: Manifest, verify: bool | str) -> None:
    if not path.is_file():
        raise FormatError(f"{path} is missing", "the artefact folder is incomplete; save it again")
    size = path.stat().st_size
    if size != manifest.weights.get("bytes"):
        raise FormatError(
            f"{path} has {size} bytes, the manifest says {manifest.weights.get('bytes')}",
            "the weights file is truncated or replaced; save it again",
        )
    algorithm = _checksum_to_verify(manifest, verify)
    if algorithm is not None and file_digest(path, algorithm) != manifest.weights[algorithm]:
        raise FormatError(
            f"{path} does not match the {algorithm} checksum in the manifest",
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
    path: str | Path, manifest: Manifest | None = None, verify: bool | str = True
) -> dict[str, Encoded]:
    """``{state-dict key: Encoded}`` of a saved artefact, every part validated.

    ``verify`` is as in :func:`load`.

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
    return call_factory(build, "build()", FormatError)


def _transformer_surgery(plan: Plan) -> bool:
    """Heads, neurons or blocks were removed (also when masks were added after the surgery)."""
    return plan.spec.get("kind") == "transformer_structured" or bool(
        {"config", "config_before"} & set(plan.attributes))


def _rebuild_physical(model: nn.Module, manifest: Manifest) -> None:
    """Resize the freshly built original to the saved widths: those of a structured plan,
    or, for a module saved without one, its recorded layout where the shapes differ."""
    stored = {k: list(t.shape) for k, t in manifest.tensors.items()}
    built = {k: list(t.shape) for k, t in model.state_dict().items()}
    differs = any(built.get(k, shape) != shape for k, shape in stored.items())
    if manifest.plan is None or ("physical" not in manifest.end_state and not differs):
        return
    plan = Plan.from_dict(manifest.plan)
    # The stored tensors' shapes are the truth; they fill any shape the plan does not list.
    plan.shapes = {**stored, **plan.shapes}
    if _transformer_surgery(plan):
        from ..hf import rebuild_transformer  # imports transformers only when needed

        rebuild_transformer(model, plan)
    else:
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


def _tensor_slot(model: nn.Module, name: str) -> tuple[nn.Module, str, torch.Tensor | None]:
    """``(module, attribute, own parameter or buffer or None)`` of a state-dict key."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    own = module._parameters.get(attr)
    return module, attr, own if own is not None else module._buffers.get(attr)


def _check_masks(model: nn.Module, manifest: Manifest) -> None:
    """Masked tensors must be parameters of layers that stay dense (checked before any write)."""
    bad = [
        name
        for name, entry in manifest.tensors.items()
        if entry.masked
        and (
            name.rpartition(".")[0] in manifest.sparse_modules
            or not isinstance(_tensor_slot(model, name)[2], nn.Parameter)
        )
    ]
    if bad:
        raise FormatError(
            f"tensors marked masked are not parameters of dense layers: {bad[:5]}",
            "the manifest is corrupt or hand-edited; save again",
        )


def _csr_direct(model: nn.Module, manifest: Manifest, stored: Stored) -> set[str]:
    """The ``csr`` layers to build straight from their stored parts (no dense weight in
    between): weight stored as bitmask, gaps or CSR, in a dtype the CSR kernel runs here."""
    direct = set()
    for name, kernel in manifest.sparse_modules.items():
        linear = model.get_submodule(name)
        enc = stored.get(f"{name}.weight")
        if (
            kernel == "csr"
            and name
            and enc is not None
            and enc.format in ("bitmask", "gaps", "csr")
            and isinstance(linear, nn.Linear)
            and "csr" in candidate_kernels(linear)
            and enc.parts["values"].dtype == linear.weight.dtype
        ):
            direct.add(name)
    return direct


def _mask_beside(target: torch.Tensor) -> torch.Tensor:
    """An uninitialised bool tensor of ``target``'s shape on its device (CPU: in memory
    numpy allocates, see :func:`empty_like_numpy`)."""
    if target.device.type == "cpu":
        return empty_like_numpy(tuple(target.shape), torch.bool)
    return torch.empty(target.shape, dtype=torch.bool, device=target.device)


def _decode_all(model: nn.Module, manifest: Manifest, stored: Stored, skip: set[str]) -> Masks:
    """Decode every stored tensor but ``skip`` into the model's own memory, on whatever
    device it is; returns the masks to put back (on the same devices). Entries that are
    not parameters or buffers of the stored dtype go through ``load_state_dict``."""
    rest, masks = {}, {}
    with torch.no_grad():
        for name, enc in stored.items():
            if name in skip:
                continue
            module, attr, target = _tensor_slot(model, name)
            if target is None or target.dtype != enc.parts["values"].dtype:
                rest[name] = decode(enc)[0]
            elif not manifest.tensors[name].masked:
                decode_into(enc, target, validate=False)
            else:  # the bool mask is filled from the same positions
                mask = _mask_beside(target)
                decode_masked_into(enc, target, mask, validate=False)
                masks[name] = mask
    if rest:
        try:
            model.load_state_dict(rest, strict=False)
        except RuntimeError as exc:
            raise FormatError(f"the weights do not load into the model: {exc}") from exc
    for name in rest:
        if manifest.tensors[name].masked:
            masks[name] = keep_mask(stored[name], validate=False)
    return masks


def _load_strict(model: nn.Module, manifest: Manifest, stored: Stored) -> None:
    """Write every stored tensor into the model and restore masks and sparse layers (all
    keys, shapes and parts already checked); every tensor stays on the device the model
    was built on.

    Parameters and buffers are decoded in place (no temporary dense copy); a CSR layer
    whose weight is stored as bitmask, gaps or CSR is built from the stored parts without
    decoding its dense weight.
    """
    direct = _csr_direct(model, manifest, stored)
    masks = _decode_all(model, manifest, stored, {f"{name}.weight" for name in direct})
    for name in direct:
        linear = model.get_submodule(name)
        assert isinstance(linear, nn.Linear)  # checked by _csr_direct
        parts = csr_parts(stored[f"{name}.weight"], validate=False)
        assert parts is not None  # bitmask, gaps or csr, at least 2 dims
        crow, col, values = (part.to(linear.weight.device) for part in parts)
        bias = None if linear.bias is None else linear.bias.detach()
        model.set_submodule(name, CSRLinear(crow, col, values, linear.in_features, bias))
    apply_kernels(model, {k: v for k, v in manifest.sparse_modules.items() if k not in direct})
    for name, mask in masks.items():
        module, attr, _ = _tensor_slot(model, name)
        apply_mask(module, mask, attr)


def load(
    path: str | Path,
    build: Callable[[], nn.Module] | nn.Module | None = None,
    *,
    allow_import: bool = False,
    verify: bool | str = True,
) -> nn.Module:
    """Load an artefact written by :func:`save`, in the end state it was saved in.

    Rebuilds the original architecture (``build`` or the recorded zoo / torchvision /
    Hugging Face reference), applies the recorded structured changes, loads every tensor
    strictly, then restores masks and sparse layers. Nothing is executed from the files.

    Args:
        path: the artefact folder.
        build: zero-argument factory of the original (unpruned) model, or such a model;
            the model is loaded on the device it is built on (CUDA included).
        allow_import: allow ``package.module:factory`` references, which import code.
        verify: check the weights file against the manifest's checksum: True (default)
            uses XXH3-64 (CRC-32, then SHA-256, for older artefacts that lack it);
            ``"xxh3_64"``, ``"crc32"`` or ``"sha256"`` that one; False none. A fast
            non-cryptographic hash is the default because the checksum guards against
            accidental corruption only (whoever can edit the weights file can edit the
            manifest's digest too); the structure of every part is validated regardless.

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
    _check_masks(model, manifest)
    _match_dtype(model, stored)
    _load_strict(model, manifest, stored)
    return model
