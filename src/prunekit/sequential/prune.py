"""``prune_pretrained``: one-shot pruning of a checkpoint folder, one block in memory at a time.

The model is built on the ``meta`` device from ``config.json``; each block is read from the
safetensors shards onto the compute device, pruned from the calibration activations that
reach it, run to give the next block its activations (pruned outputs, as in SparseGPT's
sequential loop), written to the output file and freed. Peak memory is about one block,
the calibration activations and the statistics of one block's layers, whatever the
model's size. The output folder appears whole or not at all.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import SpecError
from ..io.atomic import atomic_folder, check_target
from ..io.manifest import WEIGHTS_FILE
from ..oneshot.calibration import check_calibration, check_token_ids
from ..oneshot.layers import OneShotSettings, is_transposed
from ..oneshot.prune import _check_spec, oneshot_targets
from ..plan import Plan
from ..specs import NM, Unstructured
from ..targets import IgnoreEntry, resolve_overrides
from ..unstructured import check_nm_shapes
from .artifact import copy_side_files, write_manifest
from .skeleton import (
    Skeleton,
    build_meta,
    donor_buffers,
    find_block_list,
    param_aliases,
    read_config,
    stored_names,
)
from .source import StoredTensor, index_folder, read_stored
from .walk import walk
from .writer import TensorFileWriter

logger = logging.getLogger(__name__)
METHODS = ("wanda", "sparsegpt")


@dataclass
class SequentialResult:
    """What :func:`prune_pretrained` wrote.

    Attributes:
        path: the output folder.
        spec: the spec, as a dict.
        blocks: the blocks walked, in order.
        layers: ``{weight key: (kept, total)}`` of every pruned weight.
        skipped: ``{module name: reason}`` of prunable layers left alone.
        calibration: how calibration ran, in words.
    """

    path: Path
    spec: dict[str, Any]
    blocks: list[str]
    layers: dict[str, tuple[int, int]]
    skipped: dict[str, str]
    calibration: str

    @property
    def sparsity(self) -> float:
        """Fraction of the targeted weights removed."""
        total = sum(t for _, t in self.layers.values())
        return 1.0 - sum(k for k, _ in self.layers.values()) / max(total, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: output folder, spec, per-weight kept/total, skipped layers, sparsity."""
        return {
            "output": str(self.path), "spec": self.spec, "blocks": len(self.blocks),
            "sparsity": self.sparsity, "calibration": self.calibration,
            "layers": {k: {"kept": kept, "total": total}
                       for k, (kept, total) in self.layers.items()},
            "skipped": dict(self.skipped),
        }

    def __str__(self) -> str:
        width = max((len(k) for k in self.layers), default=5)
        lines = [f"{'weight':<{width}} {'kept':>10} {'total':>10} sparsity", "-" * (width + 31)]
        lines += [f"{k:<{width}} {kept:>10} {total:>10} {1 - kept / max(total, 1):>8.2%}"
                  for k, (kept, total) in self.layers.items()]
        lines.append(f"total: {self.sparsity:.2%} of targeted weights removed; "
                     f"written to {self.path}")
        return "\n".join(lines)


def _check_method(spec: object) -> Unstructured | NM:
    if not isinstance(spec, (Unstructured, NM)) or spec.importance not in METHODS:
        got = type(spec).__name__
        detail = f"{got}(importance={spec.importance!r})" if isinstance(
            spec, (Unstructured, NM)) else got
        raise SpecError(
            f"prune_pretrained runs calibrated one-shot pruning, not {detail}",
            "use pk.Unstructured(sparsity=0.5, importance='sparsegpt' or 'wanda') or "
            "pk.NM(2, 4, importance='sparsegpt'); prune other specs in memory with pk.prune",
        )
    if isinstance(spec, Unstructured) and spec.allocation != "uniform":
        needs = ("a pass of the whole unpruned model over the calibration data"
                 if spec.allocation == "owl" else "every layer's weights at once")
        raise SpecError(
            f"allocation={spec.allocation!r} needs {needs} before the first block is "
            "pruned, which prune_pretrained does not hold",
            "use allocation='uniform', or prune in memory with pk.prune",
        )
    return spec


def _stored_dtype(index: Mapping[str, StoredTensor]) -> torch.dtype:
    sizes: Counter[torch.dtype] = Counter()
    for stored in index.values():
        if stored.dtype.is_floating_point:
            sizes[stored.dtype] += int(torch.Size(stored.shape).numel())
    return sizes.most_common(1)[0][0] if sizes else torch.float32


def _settings(spec: Unstructured | NM, keys: list[str], sparsity: Mapping[str, float]
              ) -> OneShotSettings:
    default = spec.sparsity if spec.sparsity is not None else 0.0
    return OneShotSettings(
        method=spec.importance,
        sparsity={k: sparsity.get(k, default) for k in keys},
        nm=(spec.n_keep, spec.m) if isinstance(spec, NM) else None,
        allocation="uniform",
        bias_correction=spec.bias_correction,
        reconstruct=spec.reconstruct,
    )


def prune_pretrained(
    src_dir: str | Path,
    spec: Unstructured | NM,
    *,
    calibration: Any,
    out: str | Path,
    device: str | torch.device = "cpu",
    offload_activations: bool = False,
    dtype: torch.dtype | None = None,
    ignore: Iterable[IgnoreEntry] = (),
    overrides: Mapping[IgnoreEntry, float] | None = None,
    overwrite: bool = False,
) -> SequentialResult:
    """Prune a Hugging Face checkpoint folder block by block, never holding the whole model.

    Gives the weights and masks ``pk.prune(model, spec, calibration=...)`` gives on the
    model ``from_pretrained(src_dir, dtype=dtype)`` loads (Wanda, SparseGPT, N:M,
    ``reconstruct="dense"``, bias correction), within floating-point tolerance.

    Args:
        src_dir: a folder written by ``save_pretrained``: ``config.json`` and safetensors
            weights (one file or shards with their index).
        spec: ``pk.Unstructured(sparsity=..., importance="wanda" | "sparsegpt")`` or
            ``pk.NM(n, m, importance=...)``; ``allocation="owl"`` is not supported.
        calibration: a list of batches the model accepts (e.g. tokenizer outputs).
        out: the output folder: a Hugging Face folder (``from_pretrained`` loads it, every
            tensor stored dense) that is also a prunekit artefact (``pk.load`` restores the
            masked model; a weight's mask is its nonzero pattern).
        device: where each block is loaded and run (``"cpu"``, ``"cuda"``).
        offload_activations: keep calibration activations in CPU memory between blocks.
        dtype: the compute and output dtype of floating tensors; default: the checkpoint's.
        ignore: layers to leave alone, as in ``pk.prune``.
        overrides: per-layer sparsities, as in ``pk.prune``.
        overwrite: replace an existing ``out``.

    Returns:
        A :class:`SequentialResult` (the output folder and every pruned weight's counts).

    Raises:
        FormatError: no config, no or unreadable shards, or shards that do not fit the config.
        SpecError: a spec this path does not run.
        CalibrationError: missing calibration, or batches the model does not accept.
        ArtifactExistsError: ``out`` exists and ``overwrite`` is False.
        UnsupportedModelError: a model without a list of blocks.
        WeightError: NaN or inf in a targeted weight (nothing is left at ``out``).

    Example:
        See ``docs/large-models.md`` for a runnable example on a tiny Llama.
    """
    src, target = Path(src_dir), Path(out)
    spec = _check_method(spec)
    _check_spec(spec, overrides)
    batches = check_calibration(calibration, spec.importance)
    check_target(target, overwrite)
    index = index_folder(src)
    config = read_config(src)
    dtype = dtype if dtype is not None else _stored_dtype(index)
    model = build_meta(config, dtype)
    blocks_path, blocks = find_block_list(model)
    names = stored_names(model, index)
    check_token_ids(model, batches)
    targets, skipped = oneshot_targets(model, ignore)
    if isinstance(spec, NM):
        check_nm_shapes(spec, targets, lambda t: 0 if is_transposed(t.module) else 1)
    keys = [t.key for t in targets]
    settings = _settings(spec, keys, resolve_overrides(model, targets, overrides))
    outside, inside = donor_buffers(config, dtype, blocks_path)
    skeleton = Skeleton(model, blocks_path, blocks, names, outside, inside, param_aliases(model))
    block_names = [skeleton.block_name(i) for i in range(len(blocks))]
    note = (f"block by block from disk ({len(blocks)} blocks, {block_names[0]} first, "
            "one in memory at a time)")
    entries = {k: (t.dtype, tuple(t.shape)) for k, t in model.state_dict().items()}
    with atomic_folder(target, overwrite) as tmp:
        with TensorFileWriter(tmp / WEIGHTS_FILE, entries, {"format": "pt"}) as writer:
            state = walk(skeleton, keys, batches, settings, torch.device(device),
                         offload_activations, lambda k: read_stored(index, k), writer)
        getattr(model, "config", config).save_pretrained(tmp)  # the dtype it was built in
        copy_side_files(src, tmp)
        plan = Plan(spec=spec.to_dict(), shapes={k: list(entries[k][1]) for k in state.layers},
                    skipped=dict(skipped), calibration=note)
        write_manifest(tmp, model, entries, set(state.layers), plan)
    logger.info("pruned %d weights of %s into %s", len(state.layers), src, target)
    return SequentialResult(target, spec.to_dict(), block_names, state.layers, dict(skipped),
                            note)
