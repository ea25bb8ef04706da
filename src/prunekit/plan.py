"""The plan: a serialisable record of what pruning removes.

Deciding (score + select) produces a plan; applying it mutates a model. A plan holds:

- ``masks``: for unstructured / N:M pruning, a boolean keep-mask per parameter
  (``"features.0.weight"``), True = kept;
- ``kept``: for structured pruning, the kept indices per parameter and dimension;
- ``shapes``: every parameter / buffer shape after applying;
- ``attributes``: for structured pruning, module attributes changed by surgery
  (``{"layer1.0.conv1": {"out_channels": 48}}``; JSON values only), so that a loader can
  rebuild the pruned architecture from the original factory;
- ``removed_modules``: modules deleted from their parent container, in deletion order
  (``"encoder.layer.5"``), for whole-layer removal;
- ``skipped``: layers left alone and why;
- ``notes``: pruned layers with a caveat (``{"aux.fc": "forward not run on the example inputs"}``);
- ``calibration``: how calibrated methods ran, in words (block by block, or the whole model
  at once when the model has no sequential blocks); empty for methods without data;
- ``spec`` and library versions that made it.
"""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._version import __version__
from .errors import PlanError

PLAN_FORMAT_VERSION = 1


def library_versions() -> dict[str, str]:
    """Versions recorded in every plan and artefact."""
    return {"prunekit": __version__, "torch": torch.__version__}


def encode_mask(mask: torch.Tensor) -> dict[str, Any]:
    """Pack a boolean mask into JSON: shape + base64 of its bits (row-major).

    Example:
        >>> mask = torch.tensor([[True, False, True], [False, True, True]])
        >>> encode_mask(mask)
        {'shape': [2, 3], 'bits': 'rA=='}
        >>> torch.equal(decode_mask(encode_mask(mask)), mask)
        True
    """
    bits = np.packbits(mask.detach().cpu().numpy().astype(bool).ravel())
    return {"shape": list(mask.shape), "bits": base64.b64encode(bits.tobytes()).decode("ascii")}


def decode_mask(data: dict[str, Any]) -> torch.Tensor:
    """Inverse of :func:`encode_mask`."""
    try:
        shape = [int(d) for d in data["shape"]]
        raw = np.frombuffer(base64.b64decode(data["bits"], validate=True), dtype=np.uint8)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"malformed mask entry: {exc}") from exc
    numel = int(np.prod(shape)) if shape else 1
    if raw.size != (numel + 7) // 8:
        raise PlanError(f"mask of shape {shape} needs {(numel + 7) // 8} bytes, got {raw.size}")
    bits = np.unpackbits(raw)[:numel].astype(bool)
    return torch.from_numpy(bits.copy()).reshape(shape)


def encode_indices(indices: list[int]) -> list[int] | dict[str, str]:
    """Kept indices as JSON: ascending unique ones as base64 of one bit per index up to the
    largest (about 24x shorter than the list for a 128-channel layer); any other order
    stays a list, because the order of kept indices is the order of the kept channels.

    Example:
        >>> encode_indices([0, 2, 3])
        {'bits': 'sA=='}
        >>> decode_indices(encode_indices([0, 2, 3])), encode_indices([3, 1])
        ([0, 2, 3], [3, 1])
    """
    ascending = all(a < b for a, b in itertools.pairwise(indices))
    if not ascending or (indices and indices[0] < 0):
        return list(indices)
    bits = np.zeros(indices[-1] + 1 if indices else 0, dtype=bool)
    bits[indices] = True
    return {"bits": base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")}


def decode_indices(data: Any) -> list[int]:
    """Inverse of :func:`encode_indices` (a plain list, as older plans store, too)."""
    if isinstance(data, list):
        return [int(i) for i in data]
    try:
        raw = np.frombuffer(base64.b64decode(data["bits"], validate=True), dtype=np.uint8)
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"malformed kept-index entry: {exc}") from exc
    return [int(i) for i in np.flatnonzero(np.unpackbits(raw))]


@dataclass
class Plan:
    """What to remove. See the module docstring for the fields.

    Example:
        >>> import prunekit as pk
        >>> plan = pk.prune(torch.nn.Linear(4, 2), pk.NM(2, 4)).plan
        >>> again = Plan.from_json(plan.to_json())
        >>> again.spec == {"kind": "nm", "n_keep": 2, "m": 4, "importance": "l1"}
        True
        >>> again.masks["weight"].sum(dim=1).tolist()
        [2, 2]
    """

    spec: dict[str, Any]
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    kept: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed_modules: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    notes: dict[str, str] = field(default_factory=dict)
    calibration: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (masks and kept indices bit-packed: :func:`encode_mask`,
        :func:`encode_indices`)."""
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "spec": self.spec,
            "masks": {name: encode_mask(mask) for name, mask in self.masks.items()},
            "kept": {
                name: {str(dim): encode_indices(list(idx)) for dim, idx in dims.items()}
                for name, dims in self.kept.items()
            },
            "shapes": {name: list(shape) for name, shape in self.shapes.items()},
            "attributes": {name: dict(attrs) for name, attrs in self.attributes.items()},
            "removed_modules": list(self.removed_modules),
            "skipped": dict(self.skipped),
            "versions": dict(self.versions),
            "notes": dict(self.notes),
            "calibration": self.calibration,
        }

    def to_json(self) -> str:
        """The plan as JSON text (sorted keys, stable across runs)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Rebuild a plan from :meth:`to_dict` output.

        Raises:
            PlanError: malformed data or an unsupported format version.
        """
        if not isinstance(data, dict):
            raise PlanError(f"a plan must be a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != PLAN_FORMAT_VERSION:
            raise PlanError(
                f"plan format version {version!r} is not supported (this prunekit reads "
                f"{PLAN_FORMAT_VERSION})",
                "upgrade prunekit to read plans written by a newer version",
            )
        try:
            return cls(
                spec=dict(data["spec"]),
                masks={name: decode_mask(m) for name, m in data.get("masks", {}).items()},
                kept={
                    name: {int(dim): decode_indices(idx) for dim, idx in dims.items()}
                    for name, dims in data.get("kept", {}).items()
                },
                shapes={n: [int(d) for d in s] for n, s in data.get("shapes", {}).items()},
                attributes={str(k): dict(v) for k, v in data.get("attributes", {}).items()},
                removed_modules=[str(m) for m in data.get("removed_modules", [])],
                skipped={str(k): str(v) for k, v in data.get("skipped", {}).items()},
                versions={str(k): str(v) for k, v in data.get("versions", {}).items()},
                notes={str(k): str(v) for k, v in data.get("notes", {}).items()},
                calibration=str(data.get("calibration", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, PlanError):
                raise
            raise PlanError(f"malformed plan: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Rebuild a plan from :meth:`to_json` text (raises PlanError if malformed)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from exc
        return cls.from_dict(data)
