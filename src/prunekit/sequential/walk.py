"""The sequential walk: capture the first block's inputs, then load, prune, propagate, write
and free one block after the other; layers outside the blocks last.

Each block is pruned exactly as :func:`prunekit.oneshot.walk.calibrate_and_prune` prunes
it in memory (:func:`prunekit.oneshot.walk.prune_block`), from the outputs of the blocks
already pruned. Targeted layers outside the blocks (an untied ``lm_head``) are pruned last
from a pass of the whole model in which every block replays the activations the walk
computed, as the in-memory path runs the whole pruned model for them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ..apply.masks import effective_weight
from ..errors import WeightError
from ..io.state import logical_state
from ..oneshot.calibration import (
    Batch,
    BlockInput,
    InputStats,
    capture_block_inputs,
    check_all_ran,
    run_block,
    run_calibration,
)
from ..oneshot.layers import OneShotSettings, prune_layer
from ..oneshot.walk import prune_block
from ..targets import qualified_name
from .memory import return_freed_memory
from .skeleton import Reader, Skeleton, load_block, loaded_on_call, set_outside_buffers
from .writer import TensorFileWriter

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class WalkState:
    """What the walk found: ``{weight key: (kept, total)}`` per pruned weight."""

    layers: dict[str, tuple[int, int]] = field(default_factory=dict)


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor inside (tuples, lists, dicts) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def inputs_to(inputs: list[BlockInput], device: torch.device) -> list[BlockInput]:
    """Cached block inputs moved to ``device`` (activation offloading)."""
    return [BlockInput(to_device(i.args, device), to_device(i.kwargs, device), i.token_mask)
            for i in inputs]


def _check_finite(modules: Mapping[str, nn.Module]) -> None:
    bad = [k for k, m in modules.items() if not bool(torch.isfinite(effective_weight(m)).all())]
    if bad:
        raise WeightError(f"weights contain NaN or inf: {', '.join(bad)}",
                          "fix these weights (or ignore these layers) before pruning")


def _write_module(writer: TensorFileWriter, prefix: str, module: nn.Module) -> None:
    for rel, tensor in logical_state(module).items():
        writer.write(qualified_name(prefix, rel), tensor.value)


def copy_stored(skeleton: Skeleton, keys: list[str], read: Reader,
                writer: TensorFileWriter) -> None:
    """Write ``keys`` straight from the checkpoint (or the donor's buffers), one at a time."""
    for key in keys:
        if key not in writer.written:
            writer.write(key, skeleton.read_value(key, read))


def _hidden(item: BlockInput) -> torch.Tensor:
    hidden = item.args[0] if item.args else item.kwargs["hidden_states"]
    assert isinstance(hidden, torch.Tensor)
    return hidden


@contextlib.contextmanager
def replaying(blocks: nn.ModuleList, final: list[torch.Tensor], as_tuple: bool) -> Iterator[None]:
    """Inside the block, every block passes its input through, the last one returning the
    walk's final activations of the current batch (batches in the walk's order)."""
    position = [0]

    def passing(last: bool) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            hidden = args[0] if args else kwargs["hidden_states"]
            if last:
                hidden = final[position[0]]
                position[0] += 1
            return (hidden,) if as_tuple else hidden

        return forward

    for i, block in enumerate(blocks):
        block.forward = passing(i == len(blocks) - 1)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward


def first_block_inputs(skeleton: Skeleton, batches: list[Batch], device: torch.device,
                       storage: torch.device, read: Reader) -> list[BlockInput]:
    """Run the calibration batches (on ``device``) up to the first block; its inputs, kept
    on ``storage``. Only the modules before the first block are loaded, and only meanwhile.
    """
    set_outside_buffers(skeleton, read, device)
    with torch.no_grad(), loaded_on_call(skeleton, read, device):
        return inputs_to(capture_block_inputs(skeleton.model, skeleton.blocks[0], batches),
                         storage)


def bar(items: Sequence[T], desc: str, unit: str, progress: bool) -> Iterator[T]:
    """``items`` with a tqdm bar on a terminal (none when ``progress`` is False)."""
    yield from tqdm(items, desc=desc, unit=unit, disable=None if progress else True,
                    leave=False)


def walk(
    skeleton: Skeleton, keys: list[str], batches: list[Batch], settings: OneShotSettings,
    device: torch.device, offload: bool, read: Reader, writer: TensorFileWriter,
    progress: bool = False,
) -> WalkState:
    """Prune every targeted weight, writing every tensor of the model to ``writer``.

    Args:
        skeleton: the meta model and where its tensors are stored.
        keys: the weight keys to prune.
        batches: calibration batches (on any device; moved to ``device``).
        settings: method and amounts.
        device: where blocks are loaded and run.
        offload: keep activations in CPU memory between blocks.
        read: reads stored tensors.
        writer: the output file.
        progress: show a bar over the blocks on a terminal.

    Returns:
        The kept / total counts of every pruned weight.
    """
    state = WalkState()
    blocks = skeleton.blocks
    names = [skeleton.block_name(i) for i in range(len(blocks))]
    by_block = [[k for k in keys if k.startswith(n + ".")] for n in names]
    rest = [k for k in keys if not any(k in b for b in by_block)]
    last = len(blocks) - 1 if rest else max((i for i, b in enumerate(by_block) if b), default=-1)
    storage = torch.device("cpu") if offload else device
    with torch.no_grad():
        batches = [to_device(b, device) for b in batches]
        inputs = first_block_inputs(skeleton, batches, device, storage, read)
        dense_inputs = inputs
        as_tuple = False
        for i, name in enumerate(bar(names, "pruning blocks", "block", progress)):
            if i > last:
                copy_stored(skeleton, skeleton.block_keys(i), read, writer)
                continue
            block = load_block(skeleton, i, read, device)
            inside = {k: block.get_submodule(k[len(name) + 1:].rpartition(".")[0])
                      for k in by_block[i]}
            _check_finite(inside)
            here = inputs_to(inputs, device)
            dense_here = here if dense_inputs is inputs else inputs_to(dense_inputs, device)
            found, dense_block = prune_block(name, block, inside, here, dense_here, settings)
            state.layers.update({k: (int(m.sum()), m.numel()) for k, m in found.items()})
            _write_module(writer, name, block)
            if i < last or rest:
                if i == len(blocks) - 1:
                    as_tuple = not isinstance(block(*here[0].args, **here[0].kwargs),
                                              torch.Tensor)
                inputs = inputs_to(run_block(block, here), storage)
                dense_inputs = (inputs_to(run_block(dense_block, dense_here), storage)
                                if settings.reconstruct == "dense" else inputs)
            del block, dense_block, here, dense_here, inside, found  # free the block now
            return_freed_memory()
            logger.info("block %d/%d pruned and written", i + 1, len(blocks))
        if rest:
            final = [_hidden(item) for item in inputs_to(inputs, device)]
            state.layers.update(_prune_rest(skeleton, rest, final, as_tuple, batches, settings,
                                            device, read, writer))
        copy_stored(skeleton, skeleton.outside_keys(), read, writer)
    return state


def _prune_rest(
    skeleton: Skeleton, rest: list[str], final: list[torch.Tensor], as_tuple: bool,
    batches: list[Batch], settings: OneShotSettings, device: torch.device, read: Reader,
    writer: TensorFileWriter,
) -> dict[str, tuple[int, int]]:
    """Prune the targeted layers outside the blocks from one replayed pass of the model."""
    model = skeleton.model
    counts = {}
    with replaying(skeleton.blocks, final, as_tuple), loaded_on_call(skeleton, read, device):
        modules = {k: model.get_submodule(k.rpartition(".")[0]) for k in rest}
        stats = InputStats(modules, gram=settings.method == "sparsegpt")
        run_calibration(model, stats, batches)
        check_all_ran(modules, stats.count)
        _check_finite(modules)
        for key, module in modules.items():
            mask = prune_layer(module, key, stats, settings)
            counts[key] = (int(mask.sum()), mask.numel())
            _write_module(writer, key.rpartition(".")[0], module)
    return counts

