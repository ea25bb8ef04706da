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
from ..hf.arch import read_arch
from ..hf.prune import calibration_purpose, ignored_blocks, needs_data, refuse_overrides
from ..io.atomic import atomic_folder, check_target
from ..io.manifest import WEIGHTS_FILE
from ..oneshot.calibration import check_calibration, check_token_ids
from ..oneshot.layers import OneShotSettings, is_transposed
from ..oneshot.prune import _check_spec, oneshot_targets
from ..plan import Plan
from ..specs import NM, TransformerStructured, Unstructured
from ..targets import IgnoreEntry, check_ignore, resolve_overrides
from ..unstructured import check_nm_shapes
from .allocation import streamed_magnitude_sparsities
from .artifact import copy_side_files, save_config, write_manifest
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
from .structured import check_decidable, check_structured, cut_walk, plan_cut, score_walk
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


def _check_method(spec: object) -> Unstructured | NM | TransformerStructured:
    if isinstance(spec, TransformerStructured):
        check_structured(spec)
        return spec
    if not isinstance(spec, (Unstructured, NM)) or spec.importance not in METHODS:
        got = type(spec).__name__
        detail = f"{got}(importance={spec.importance!r})" if isinstance(
            spec, (Unstructured, NM)) else got
        raise SpecError(
            f"prune_pretrained runs calibrated one-shot pruning, not {detail}",
            "use pk.Unstructured(sparsity=0.5, importance='sparsegpt' or 'wanda') or "
            "pk.NM(2, 4, importance='sparsegpt') or pk.TransformerStructured(...); prune "
            "other specs in memory with pk.prune",
        )
    if isinstance(spec, Unstructured) and spec.allocation == "owl":
        raise SpecError(
            "allocation='owl' needs a pass of the whole unpruned model over the calibration "
            "data before the first block is pruned, which prune_pretrained does not hold",
            "use allocation='global' or 'uniform', or prune in memory with pk.prune",
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


@dataclass
class _Opened:
    """A checkpoint folder opened for a walk: the meta model and where its tensors are."""

    src: Path
    index: dict[str, StoredTensor]
    config: Any
    skeleton: Skeleton

    def read(self, names: list[str]) -> dict[str, torch.Tensor]:
        return read_stored(self.index, names)


@dataclass
class _Options:
    out: Path
    device: torch.device
    offload: bool
    ignore: list[IgnoreEntry]
    overrides: Mapping[IgnoreEntry, float] | None
    overwrite: bool
    progress: bool


def _open(src: Path, dtype: torch.dtype | None) -> _Opened:
    index = index_folder(src)
    config = read_config(src)
    dtype = dtype if dtype is not None else _stored_dtype(index)
    model = build_meta(config, dtype)
    blocks_path, blocks = find_block_list(model)
    names = stored_names(model, index)
    outside, inside = donor_buffers(config, dtype, blocks_path)
    skeleton = Skeleton(model, blocks_path, blocks, names, outside, inside, param_aliases(model))
    return _Opened(src, dict(index), config, skeleton)


def _structured_calibration(spec: TransformerStructured, calibration: Any) -> list[Any] | None:
    if needs_data(spec):
        return check_calibration(calibration, calibration_purpose(spec))
    if calibration is not None:
        raise SpecError(f"TransformerStructured with importance={spec.importance!r} and "
                        f"layers={spec.layers!r} does not use calibration=; it would be ignored",
                        "drop calibration=, or rank by importance='activation'")
    return None


def _entries(model: torch.nn.Module) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    return {k: (t.dtype, tuple(t.shape)) for k, t in model.state_dict().items()}


def _block_names(skeleton: Skeleton) -> list[str]:
    return [skeleton.block_name(i) for i in range(len(skeleton.blocks))]


def prune_pretrained(
    src_dir: str | Path,
    spec: Unstructured | NM | TransformerStructured,
    *,
    calibration: Any = None,
    out: str | Path,
    device: str | torch.device = "cpu",
    offload_activations: bool = False,
    dtype: torch.dtype | None = None,
    ignore: Iterable[IgnoreEntry] = (),
    overrides: Mapping[IgnoreEntry, float] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> SequentialResult:
    """Prune a Hugging Face checkpoint folder block by block, never holding the whole model.

    Gives the weights and masks ``pk.prune(model, spec, calibration=...)`` gives on the
    model ``from_pretrained(src_dir, dtype=dtype)`` loads (Wanda, SparseGPT, N:M,
    ``reconstruct="dense"``, bias correction), within floating-point tolerance; for
    ``pk.TransformerStructured`` the smaller model ``pk.prune`` gives (same heads, neurons
    and blocks removed; magnitude or activation importance).

    Args:
        src_dir: a folder written by ``save_pretrained``: ``config.json`` and safetensors
            weights (one file or shards with their index).
        spec: ``pk.Unstructured(sparsity=..., importance="wanda" | "sparsegpt")``,
            ``pk.NM(n, m, importance=...)`` or ``pk.TransformerStructured(...)``;
            ``allocation="owl"`` and ``importance="taylor"`` are not supported
            (``allocation="global"`` is: the weights are read one at a time).
        calibration: a list of batches the model accepts (e.g. tokenizer outputs); not
            needed by ``TransformerStructured`` with magnitude importance and no block count.
        out: the output folder: a Hugging Face folder (``from_pretrained`` loads it, every
            tensor stored dense, wherever the config can describe the pruned shapes) that
            is also a prunekit artefact (``pk.load`` restores the masked model, a weight's
            mask being its nonzero pattern, or the physically smaller one).
        device: where each block is loaded and run (``"cpu"``, ``"cuda"``).
        offload_activations: keep calibration activations in CPU memory between blocks.
        dtype: the compute and output dtype of floating tensors; default: the checkpoint's.
        ignore: layers (or, for ``TransformerStructured``, blocks) to leave alone, as in
            ``pk.prune``.
        overrides: per-layer sparsities, as in ``pk.prune`` (one-shot specs only).
        overwrite: replace an existing ``out``.
        progress: show a bar over the blocks (and tensors written) on a terminal.

    Returns:
        A :class:`SequentialResult` (the output folder and every pruned weight's counts).

    Raises:
        FormatError: no config, no or unreadable shards, or shards that do not fit the config.
        SpecError: a spec this path does not run.
        CalibrationError: missing calibration, or batches the model does not accept.
        ArtifactExistsError: ``out`` exists and ``overwrite`` is False.
        UnsupportedModelError: a model without a list of blocks (or, for
            ``TransformerStructured``, of blocks prunekit knows).
        WeightError: NaN or inf in a targeted weight (nothing is left at ``out``).

    Example:
        See ``docs/large-models.md`` for a runnable example on a tiny Llama.
    """
    src, target = Path(src_dir), Path(out)
    spec = _check_method(spec)
    if isinstance(spec, TransformerStructured):
        refuse_overrides(overrides)
        batches = _structured_calibration(spec, calibration)
    else:
        _check_spec(spec, overrides)
        batches = check_calibration(calibration, spec.importance)
    check_target(target, overwrite)
    opened = _open(src, dtype)
    if batches is not None:
        check_token_ids(opened.skeleton.model, batches)
    options = _Options(target, torch.device(device), offload_activations, list(ignore),
                       overrides, overwrite, progress)
    if isinstance(spec, TransformerStructured):
        return _prune_structured(opened, spec, batches, options)
    assert batches is not None
    return _prune_oneshot(opened, spec, batches, options)


def _prune_oneshot(opened: _Opened, spec: Unstructured | NM, batches: list[Any],
                   options: _Options) -> SequentialResult:
    skeleton = opened.skeleton
    model = skeleton.model
    targets, skipped = oneshot_targets(model, options.ignore)
    if isinstance(spec, NM):
        check_nm_shapes(spec, targets, lambda t: 0 if is_transposed(t.module) else 1)
    keys = [t.key for t in targets]
    if isinstance(spec, Unstructured) and spec.allocation == "global":
        sparsity = _global_sparsities(opened, keys, spec.sparsity or 0.0)
    else:
        sparsity = resolve_overrides(model, targets, options.overrides)
    settings = _settings(spec, keys, sparsity)
    block_names = _block_names(skeleton)
    note = (f"block by block from disk ({len(block_names)} blocks, {block_names[0]} first, "
            "one in memory at a time)")
    entries = _entries(model)
    with atomic_folder(options.out, options.overwrite) as tmp:
        with TensorFileWriter(tmp / WEIGHTS_FILE, entries, {"format": "pt"}) as writer:
            state = walk(skeleton, keys, batches, settings, options.device, options.offload,
                         opened.read, writer, options.progress)
        getattr(model, "config", opened.config).save_pretrained(tmp)  # the dtype it was built in
        plan = Plan(spec=spec.to_dict(), shapes={k: list(entries[k][1]) for k in state.layers},
                    skipped=dict(skipped), calibration=note)
        _finish(opened, tmp, model, entries, set(state.layers), plan)
    logger.info("pruned %d weights into %s", len(state.layers), options.out)
    return SequentialResult(options.out, spec.to_dict(), block_names, state.layers,
                            dict(skipped), note)


def _global_sparsities(opened: _Opened, keys: list[str], target: float) -> dict[str, float]:
    """Each layer's share of a global magnitude ranking, its weights read one at a time."""
    skeleton = opened.skeleton
    params = dict(skeleton.model.named_parameters(remove_duplicate=False))

    def load(key: str) -> torch.Tensor:
        return skeleton.read_value(key, opened.read).to(params[key].dtype)

    sizes = {key: params[key].numel() for key in keys}
    return streamed_magnitude_sparsities(keys, sizes, load, target)


def _prune_structured(opened: _Opened, spec: TransformerStructured, batches: list[Any] | None,
                      options: _Options) -> SequentialResult:
    skeleton = opened.skeleton
    arch = read_arch(skeleton.model)
    skip = ignored_blocks(skeleton.model, arch, check_ignore(skeleton.model, options.ignore))
    check_decidable(spec, arch, skip)
    scores = score_walk(skeleton, arch, spec, batches, options.device, options.offload,
                        opened.read, options.progress)
    cut = plan_cut(skeleton, arch, spec, scores, skip)
    block_names = _block_names(skeleton)
    note = (f"scored block by block from disk ({len(block_names)} blocks, one in memory at "
            "a time), then cut tensor by tensor") if batches is not None else (
            "scored by weight magnitude block by block, then cut tensor by tensor")
    skipped = {arch.blocks[b].name: "ignored" for b in sorted(skip)}
    entries = _entries(cut.model)
    with atomic_folder(options.out, options.overwrite) as tmp:
        with TensorFileWriter(tmp / WEIGHTS_FILE, entries, {"format": "pt"}) as writer:
            layers = cut_walk(skeleton, cut, opened.read, writer, options.progress)
        save_config(getattr(cut.model, "config", opened.config), tmp)
        changes = cut.changes
        plan = Plan(spec=spec.to_dict(), kept=changes.kept,
                    shapes={k: list(shape) for k, (_, shape) in entries.items()},
                    attributes=changes.attributes, removed_modules=changes.removed_modules,
                    skipped=skipped, calibration=note)
        _finish(opened, tmp, cut.model, entries, set(), plan, physical=True)
    logger.info("removed %d blocks, cut %d tensors, into %s", len(cut.decision.layers),
                len(layers), options.out)
    return SequentialResult(options.out, spec.to_dict(), block_names, layers, skipped, note)


def _finish(opened: _Opened, tmp: Path, model: torch.nn.Module,
            entries: dict[str, tuple[torch.dtype, tuple[int, ...]]], masked: set[str],
            plan: Plan, *, physical: bool = False) -> None:
    copy_side_files(opened.src, tmp)
    write_manifest(tmp, model, entries, masked, plan, physical=physical)
