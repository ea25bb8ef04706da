"""The output folder: a Hugging Face folder that is also a prunekit artefact.

``model.safetensors`` holds every tensor dense under its Hugging Face name (so
``from_pretrained`` reads it), ``config.json`` and the source's other small files (tokenizer,
generation config) are copied, and ``manifest.json`` records the pruned weights as masked
(their keep-mask is their nonzero pattern), so :func:`prunekit.load` restores the masked
end state.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import torch
from torch import nn

from ..io.atomic import atomic_file
from ..io.manifest import MANIFEST_FILE, WEIGHTS_FILE, Manifest, TensorEntry
from ..io.save import dtype_name, model_entry
from ..plan import Plan, library_versions
from .source import CONFIG_FILE, INDEX_FILE
from .writer import file_digests

logger = logging.getLogger(__name__)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")


def copy_side_files(src: Path, dst: Path) -> None:
    """Copy the source folder's small top-level files (tokenizer, generation config), not
    its weights, index or config (the config is written from the model)."""
    for path in sorted(src.iterdir()):
        if (path.is_file() and not path.name.startswith(".")
                and path.suffix not in WEIGHT_SUFFIXES
                and path.name not in (INDEX_FILE, CONFIG_FILE, MANIFEST_FILE)):
            shutil.copy2(path, dst / path.name)


def save_config(config: Any, folder: Path) -> None:
    """Write ``config.json`` as ``save_pretrained`` does; a config that ``transformers``
    refuses to validate (e.g. a head count that does not divide the hidden size, which
    the pruned model runs with but ``from_pretrained`` rejects) is written unvalidated,
    with a warning: ``pk.load`` still rebuilds the model from the manifest."""
    try:
        config.save_pretrained(folder)
    except Exception as exc:  # noqa: BLE001 - transformers' validators raise several types
        logger.warning("transformers refuses the pruned config (%s): from_pretrained will "
                       "not load the output folder, pk.load will", exc)
        config.to_json_file(str(folder / CONFIG_FILE), use_diff=True)


def write_manifest(
    folder: Path, model: nn.Module, entries: Mapping[str, tuple[torch.dtype, tuple[int, ...]]],
    masked: set[str], plan: Plan, *, physical: bool = False,
) -> None:
    """Write ``manifest.json`` for the ``model.safetensors`` already in ``folder``.

    Args:
        folder: the output folder being written.
        model: the (meta) model: its class and config name the architecture.
        entries: ``{name: (dtype, shape)}`` of every stored tensor.
        masked: the pruned weights (stored dense; their zeros are their mask).
        plan: spec, shapes, skipped layers and calibration note (no masks); for a
            physically pruned model also kept indices, attributes and removed blocks.
        physical: the shapes are the pruned ones (``pk.load`` rebuilds them from the plan).
    """
    weights_file = folder / WEIGHTS_FILE
    tensors = {
        name: TensorEntry("dense", tuple(shape), dtype_name(dtype), {}, name in masked,
                          dtype.itemsize * int(torch.Size(shape).numel()))
        for name, (dtype, shape) in entries.items()
    }
    plan_entry: dict[str, Any] = plan.to_dict()
    plan_entry["masks"] = {}
    manifest = Manifest(
        end_state=(["physical"] if physical else []) + (["masked"] if masked else [])
        or ["dense"],
        model=model_entry(model, None, set(entries), plan),
        spec=plan.spec,
        plan=plan_entry,
        tensors=tensors,
        sparse_modules={},
        weights={"file": WEIGHTS_FILE, "bytes": weights_file.stat().st_size,
                 **file_digests(weights_file)},
        versions={**library_versions(), "safetensors": safetensors.__version__},
    )
    atomic_file(folder / MANIFEST_FILE, manifest.to_json().encode("utf-8"))
