"""Walking the model for one-shot pruning: block by block, each block's targets pruned from
the inputs the already pruned previous blocks give it (see :mod:`.calibration`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import nn
from tqdm.auto import tqdm

from ..distributed import calibration_shard
from ..inputs import eval_mode
from .allocation import outlier_ratio, owl_sparsities
from .calibration import (
    Batch,
    BlockInput,
    InputStats,
    StopForward,
    capture_block_inputs,
    check_all_ran,
    run_block,
    run_calibration,
)
from .layers import OneShotSettings, layer_matrix, prune_layer
from .paired import PairedInputStats, call_stages
from .ranks import reduce_input_stats, reduce_paired_stats
from .wanda import wanda_scores

logger = logging.getLogger(__name__)


def _prune_stage(
    modules: Mapping[str, nn.Module], stats: InputStats, settings: OneShotSettings
) -> dict[str, torch.Tensor]:
    stats.remove()
    if settings.across_ranks:
        reduce_input_stats(stats, modules)
    check_all_ran(modules, stats.count)
    return {key: prune_layer(m, key, stats, settings) for key, m in modules.items()}


def _whole_model_stage(
    model: nn.Module, modules: Mapping[str, nn.Module], batches: list[Batch],
    settings: OneShotSettings,
) -> dict[str, torch.Tensor]:
    stats = InputStats(modules, gram=settings.method == "sparsegpt")
    run_calibration(model, stats, batches)
    return _prune_stage(modules, stats, settings)


def owl_allocation(
    model: nn.Module, modules: Mapping[str, nn.Module], block_names: list[str],
    batches: list[Batch], sparsity: Mapping[str, float], *, across_ranks: bool = False,
) -> dict[str, float]:
    """Outlier-weighted per-layer sparsities from one pass of the unpruned model.

    Args:
        model: the (still dense) model.
        modules: ``{weight key: module}`` of the targeted layers.
        block_names: names of the model's blocks; layers outside them form their own group.
        batches: calibration batches.
        sparsity: the uniform per-layer sparsities; their weighted mean is kept overall.
        across_ranks: ``batches`` are this rank's share; sum the statistics over ranks.

    Returns:
        ``{weight key: sparsity}``, equal within a block.
    """
    stats = InputStats(modules, gram=False)
    run_calibration(model, stats, batches)
    if across_ranks:
        reduce_input_stats(stats, modules)
    check_all_ran(modules, stats.count)
    groups: dict[str, list[str]] = {}
    for key in modules:
        group = next((b for b in block_names if key.startswith(b + ".")), key)
        groups.setdefault(group, []).append(key)
    sizes = {g: sum(layer_matrix(modules[k]).numel() for k in keys) for g, keys in groups.items()}
    total = sum(sizes.values())
    target = sum(sparsity[k] * layer_matrix(modules[k]).numel() for k in modules) / total
    ratios = {
        g: outlier_ratio([wanda_scores(layer_matrix(modules[k]), stats.sq_sum[k]) for k in keys])
        for g, keys in groups.items()
    }
    per_group = owl_sparsities(ratios, sizes, target)
    logger.info("outlier-weighted sparsities: %s",
                {g: round(v, 4) for g, v in per_group.items()})
    return {k: per_group[g] for g, keys in groups.items() for k in keys}


def _block_stats(
    block: nn.Module, modules: Mapping[str, nn.Module], inputs: list[BlockInput],
    settings: OneShotSettings,
) -> InputStats:
    """Input statistics of a block's targeted layers over its cached inputs.

    Each pass stops once the last targeted layer's input was recorded (see
    :class:`InputStats`), so the block's remaining work is skipped.
    """
    stats = InputStats(modules, gram=settings.method == "sparsegpt")
    try:
        for item in inputs:
            stats.token_mask = item.token_mask
            with contextlib.suppress(StopForward):
                block(*item.args, **item.kwargs)
            stats.end_pass()
    except BaseException:
        stats.remove()
        raise
    return stats


def _prune_block_towards_dense(
    name: str, block: nn.Module, modules: Mapping[str, nn.Module], inputs: list[BlockInput],
    dense_inputs: list[BlockInput], settings: OneShotSettings,
) -> tuple[dict[str, torch.Tensor], nn.Module]:
    """Prune a block's targets stage by stage towards the unpruned block's layer outputs.

    Returns:
        ``({weight key: keep-mask}, the unpruned copy of the block)``.
    """
    dense_block = copy.deepcopy(block)
    dense_modules = {k: dense_block.get_submodule(k[len(name) + 1:].rpartition(".")[0])
                     for k in modules}
    stages, once_each = call_stages(block, modules, inputs[0])
    masks: dict[str, torch.Tensor] = {}
    for stage in stages:
        stats = PairedInputStats({k: modules[k] for k in stage},
                                 {k: dense_modules[k] for k in stage},
                                 stop_after=stage[-1] if once_each else None)
        stats.run(block, dense_block, inputs, dense_inputs)
        if settings.across_ranks:
            reduce_paired_stats(stats, {k: modules[k] for k in stage})
        masks.update({k: prune_layer(modules[k], k, stats, settings) for k in stage})
    return masks, dense_block


def prune_block(
    name: str, block: nn.Module, modules: Mapping[str, nn.Module], inputs: list[BlockInput],
    dense_inputs: list[BlockInput], settings: OneShotSettings,
) -> tuple[dict[str, torch.Tensor], nn.Module]:
    """Prune the targeted layers of one block from the inputs it receives.

    Args:
        name: the block's name in the model (the prefix of its weight keys).
        block: the block, mutated in place.
        modules: ``{weight key: module}`` of the block's targeted layers (may be empty).
        inputs: the block's inputs in the model pruned so far.
        dense_inputs: the unpruned model's inputs to it (read for ``reconstruct="dense"``).
        settings: method and amounts.

    Returns:
        ``(masks, reference)``: ``{weight key: keep-mask}``, and the block whose outputs
        on ``dense_inputs`` are the unpruned model's (an unpruned copy for
        ``reconstruct="dense"``, else ``block`` itself).
    """
    if not modules:
        return {}, block
    if settings.reconstruct == "dense":
        return _prune_block_towards_dense(name, block, modules, inputs, dense_inputs, settings)
    stats = _block_stats(block, modules, inputs, settings)
    return _prune_stage(modules, stats, settings), block


def calibrate_and_prune(
    model: nn.Module, keys: list[str], batches: list[Batch], settings: OneShotSettings,
    block_names: list[str], *, distributed: bool | None = None,
) -> dict[str, torch.Tensor]:
    """Walk the model block by block, pruning each block's targets from its inputs.

    In a ``torch.distributed`` job every rank passes the same ``batches`` and runs its
    share of them (see :func:`prunekit.distributed.calibration_shard`); the statistics are
    summed over the ranks before each layer is pruned, so every rank prunes alike.

    Args:
        model: the model to mutate.
        keys: weight keys to prune (``"encoder.layer.0.attention.self.query.weight"``).
        batches: calibration batches.
        settings: method and amounts.
        block_names: the model's sequential blocks (see :func:`.blocks.find_blocks`);
            empty to calibrate the whole model at once.
        distributed: None splits the batches over the ranks when a process group of two
            or more is initialized; True requires one; False runs every batch here.

    Returns:
        ``{weight key: keep-mask}`` for every pruned weight.

    Raises:
        SpecError: ``distributed=True`` without a process group.
    """
    shard = calibration_shard(len(batches), distributed)
    if shard is not None:
        batches = shard.local(batches)
        settings = replace(settings, across_ranks=True)
    modules = {k: model.get_submodule(k.rpartition(".")[0]) for k in keys}
    masks: dict[str, torch.Tensor] = {}
    with torch.no_grad(), eval_mode(model):
        blocks = [(name, model.get_submodule(name)) for name in block_names]
        if settings.allocation == "owl":
            sparsity = owl_allocation(model, modules, [n for n, _ in blocks], batches,
                                      settings.sparsity, across_ranks=settings.across_ranks)
            settings = replace(settings, sparsity=sparsity)
        if blocks:
            inputs = capture_block_inputs(model, blocks[0][1], batches)
            dense_inputs = inputs  # the unpruned model's, for reconstruct="dense"
            for name, block in tqdm(blocks, desc=settings.method, unit="block", disable=None):
                inside = {k: m for k, m in modules.items() if k.startswith(name + ".")}
                found, dense_block = prune_block(name, block, inside, inputs, dense_inputs,
                                                 settings)
                masks.update(found)
                if len(masks) == len(modules):
                    break  # nothing left to calibrate: later outputs are not needed
                inputs = run_block(block, inputs)
                if settings.reconstruct == "dense":
                    dense_inputs = run_block(dense_block, dense_inputs)
        rest = {k: m for k, m in modules.items() if k not in masks}
        if rest:
            masks.update(_whole_model_stage(model, rest, batches, settings))
    return masks
