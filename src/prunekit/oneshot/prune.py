"""One-shot, calibrated pruning to the masked end state: Wanda and SparseGPT.

Validation happens first (calibration present, spec supported, layers prunable); then the
model (or its copy) is calibrated block by block and each targeted weight gets a mask
(and, for SparseGPT, reconstructed values), giving the same masked end state as any other
prunekit result: ``finalize``, saving and sparse conversion work unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..apply.masks import apply_mask, effective_weight, existing_mask
from ..errors import ShapeError, SpecError, TargetError
from ..inputs import (
    ExampleInputs,
    check_same_output_shapes,
    eval_mode,
    run_example,
)
from ..plan import Plan
from ..result import PruneResult
from ..specs import NM, Unstructured
from ..summary import count_parameters, layer_infos
from ..targets import IgnoreEntry, Target, qualified_name, resolve_overrides, resolve_targets
from ..unstructured import check_finite
from .allocation import outlier_ratio, owl_sparsities
from .blocks import find_blocks
from .calibration import (
    Batch,
    BlockInput,
    InputStats,
    StopForward,
    capture_block_inputs,
    check_all_ran,
    check_calibration,
    check_token_ids,
    run_block,
    run_calibration,
)
from .correction import corrected_bias
from .paired import PairedInputStats, call_stages
from .reconstruct import dense_target_weight
from .sparsegpt import inverse_hessian_factor, sparsegpt_prune
from .wanda import wanda_mask, wanda_scores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OneShotSettings:
    """What to do to each layer: method, per-layer sparsity or N:M, allocation, SparseGPT knobs."""

    method: str
    sparsity: Mapping[str, float]
    nm: tuple[int, int] | None
    allocation: str = "uniform"
    damp: float = 0.01
    block_size: int = 128
    bias_correction: bool = False
    reconstruct: str = "layer"
    ridge: float = 0.5  # pull of W* towards W for reconstruct="dense" (see .reconstruct)


def _hf_conv1d_type() -> tuple[type[nn.Module], ...]:
    """Hugging Face's transposed-weight ``Conv1D`` (GPT-2), if transformers is loaded."""
    module = sys.modules.get("transformers.pytorch_utils")
    conv1d = getattr(module, "Conv1D", None) if module is not None else None
    return (conv1d,) if isinstance(conv1d, type) else ()


def _is_transposed(module: nn.Module) -> bool:
    return isinstance(module, _hf_conv1d_type())


def _tied(model: nn.Module) -> dict[int, list[str]]:
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append(qualified_name(name, pname))
    return owners


def oneshot_targets(
    model: nn.Module, ignore: Iterable[IgnoreEntry]
) -> tuple[list[Target], dict[str, str]]:
    """Linear (and Hugging Face Conv1D) weights to prune; tied weights are left alone.

    Raises:
        TargetError: nothing prunable remains.
    """
    targets, skipped = resolve_targets(model, ignore=ignore, types=(nn.Linear,) + _hf_conv1d_type())
    owners = _tied(model)
    kept = []
    for t in targets:
        orig = getattr(t.module, "weight_orig", None)
        weight = orig if orig is not None else t.module.weight
        sharing = [n for n in owners.get(id(weight), []) if n.rpartition(".")[0] != t.module_name]
        if sharing:
            skipped[t.module_name] = f"weight tied to {', '.join(sharing)}"
        else:
            kept.append(t)
    if not kept:
        raise TargetError("no untied Linear layer left to prune", "check the ignore list")
    return kept, skipped


def _check_spec(spec: Unstructured | NM, overrides: Mapping[str, float] | None) -> None:
    if isinstance(spec, Unstructured) and spec.threshold is not None:
        raise SpecError(
            f"{spec.importance} prunes to a sparsity, not a threshold",
            f"use Unstructured(sparsity=0.5, importance={spec.importance!r})",
        )
    if isinstance(spec, Unstructured) and spec.scope != "layer":
        raise SpecError(
            f"{spec.importance} compares weights within each layer; scope={spec.scope!r} "
            "is not supported",
            "use scope='layer' (per-layer sparsity can be set with overrides=)",
        )
    if isinstance(spec, Unstructured) and spec.allocation != "uniform" and overrides:
        raise SpecError(
            f"allocation={spec.allocation!r} chooses every layer's sparsity; "
            "overrides= would fight it",
            "drop overrides= or use allocation='uniform'",
        )
    if isinstance(spec, NM) and overrides:
        raise SpecError("per-layer overrides do not apply to N:M", "use ignore= to skip layers")


def _check_nm_widths(spec: NM, targets: list[Target]) -> None:
    bad = [
        f"{t.key} (input width {_matrix(t.module).shape[1]})"
        for t in targets
        if _matrix(t.module).shape[1] % spec.m
    ]
    if bad:
        raise ShapeError(
            f"N:M with m={spec.m} needs input widths divisible by {spec.m}: {', '.join(bad)}",
            "ignore these layers (ignore=[...]) or choose another m",
        )


def _matrix(module: nn.Module) -> torch.Tensor:
    """The weight as (out, in), whatever the module's storage order."""
    weight = effective_weight(module)
    return weight.t() if _is_transposed(module) else weight


def _removed(module: nn.Module) -> torch.Tensor | None:
    mask = existing_mask(module)
    if mask is None:
        return None
    return ~(mask.t() if _is_transposed(module) else mask)


def prune_layer(
    module: nn.Module, key: str, stats: InputStats | PairedInputStats,
    settings: OneShotSettings,
) -> torch.Tensor:
    """Prune one layer from its calibration statistics; return its keep-mask (storage order).

    With paired statistics SparseGPT reconstructs the unpruned model's output of the layer
    (see :mod:`.reconstruct`). With ``settings.bias_correction`` the layer's bias (if it has
    one) then absorbs the mean output shift left on the calibration tokens (see
    :mod:`.correction`).
    """
    weight = _matrix(module)  # (out, in); neither method writes into it
    dense = weight.clone() if settings.bias_correction else None  # before pruning
    sparsity = settings.sparsity.get(key)
    removed = _removed(module)
    if settings.method == "wanda":
        assert isinstance(stats, InputStats)  # reconstruct="dense" is SparseGPT only
        keep = wanda_mask(weight, stats.sq_sum[key], sparsity=sparsity, nm=settings.nm,
                          already_removed=removed)
        new_weight = None
    else:
        if isinstance(stats, PairedInputStats):
            weight = dense_target_weight(weight, stats.xtx[key], stats.cross[key],
                                         settings.ridge)
        hinv = inverse_hessian_factor(stats.xtx[key], stats.count[key], settings.damp)
        new_weight, keep = sparsegpt_prune(
            weight, hinv, sparsity=sparsity, nm=settings.nm, already_removed=removed,
            block_size=settings.block_size,
        )
    if _is_transposed(module):
        keep = keep.t().contiguous()
        new_weight = None if new_weight is None else new_weight.t().contiguous()
    if new_weight is not None:
        param = getattr(module, "weight_orig", None)
        target = param if isinstance(param, nn.Parameter) else effective_weight_param(module)
        with torch.no_grad():
            target.copy_(new_weight.to(dtype=target.dtype))
    apply_mask(module, keep)
    if dense is not None:
        dense_mean = stats.dense_mean(key) if isinstance(stats, PairedInputStats) else None
        correct_bias(module, dense, stats.mean(key), dense_mean)
    return keep


def correct_bias(module: nn.Module, dense_weight: torch.Tensor, input_mean: torch.Tensor,
                 dense_input_mean: torch.Tensor | None) -> None:
    """Add ``W_dense @ mean(x_dense) - W_pruned @ mean(x)`` to the module's bias; no bias,
    no change."""
    bias = getattr(module, "bias", None)
    if not isinstance(bias, torch.Tensor):
        return
    with torch.no_grad():
        bias.copy_(corrected_bias(bias, dense_weight, _matrix(module), input_mean,
                                  dense_input_mean))


def effective_weight_param(module: nn.Module) -> nn.Parameter:
    """The module's ``weight`` Parameter (unmasked module)."""
    weight = module.weight
    assert isinstance(weight, nn.Parameter)
    return weight


def _prune_stage(
    modules: Mapping[str, nn.Module], stats: InputStats, settings: OneShotSettings
) -> dict[str, torch.Tensor]:
    stats.remove()
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
    batches: list[Batch], sparsity: Mapping[str, float],
) -> dict[str, float]:
    """Outlier-weighted per-layer sparsities from one pass of the unpruned model.

    Args:
        model: the (still dense) model.
        modules: ``{weight key: module}`` of the targeted layers.
        block_names: names of the model's blocks; layers outside them form their own group.
        batches: calibration batches.
        sparsity: the uniform per-layer sparsities; their weighted mean is kept overall.

    Returns:
        ``{weight key: sparsity}``, equal within a block.
    """
    stats = InputStats(modules, gram=False)
    run_calibration(model, stats, batches)
    groups: dict[str, list[str]] = {}
    for key in modules:
        group = next((b for b in block_names if key.startswith(b + ".")), key)
        groups.setdefault(group, []).append(key)
    sizes = {g: sum(_matrix(modules[k]).numel() for k in keys) for g, keys in groups.items()}
    total = sum(sizes.values())
    target = sum(sparsity[k] * _matrix(modules[k]).numel() for k in modules) / total
    ratios = {
        g: outlier_ratio([wanda_scores(_matrix(modules[k]), stats.sq_sum[k]) for k in keys])
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
        masks.update({k: prune_layer(modules[k], k, stats, settings) for k in stage})
    return masks, dense_block


def calibrate_and_prune(
    model: nn.Module, keys: list[str], batches: list[Batch], settings: OneShotSettings
) -> dict[str, torch.Tensor]:
    """Walk the model block by block, pruning each block's targets from its inputs.

    Args:
        model: the model to mutate.
        keys: weight keys to prune (``"encoder.layer.0.attention.self.query.weight"``).
        batches: calibration batches.
        settings: method and amounts.

    Returns:
        ``{weight key: keep-mask}`` for every pruned weight.
    """
    modules = {k: model.get_submodule(k.rpartition(".")[0]) for k in keys}
    masks: dict[str, torch.Tensor] = {}
    with torch.no_grad(), eval_mode(model):
        blocks = find_blocks(model, keys, batches[0])
        if settings.allocation == "owl":
            sparsity = owl_allocation(model, modules, [n for n, _ in blocks], batches,
                                      settings.sparsity)
            settings = replace(settings, sparsity=sparsity)
        if blocks:
            inputs = capture_block_inputs(model, blocks[0][1], batches)
            dense_inputs = inputs  # the unpruned model's, for reconstruct="dense"
            for name, block in tqdm(blocks, desc=settings.method, unit="block", disable=None):
                inside = {k: m for k, m in modules.items() if k.startswith(name + ".")}
                dense_block = block
                if inside and settings.reconstruct == "dense":
                    found, dense_block = _prune_block_towards_dense(
                        name, block, inside, inputs, dense_inputs, settings)
                    masks.update(found)
                elif inside:
                    stats = _block_stats(block, inside, inputs, settings)
                    masks.update(_prune_stage(inside, stats, settings))
                if len(masks) == len(modules):
                    break  # nothing left to calibrate: later outputs are not needed
                inputs = run_block(block, inputs)
                if settings.reconstruct == "dense":
                    dense_inputs = run_block(dense_block, dense_inputs)
        rest = {k: m for k, m in modules.items() if k not in masks}
        if rest:
            masks.update(_whole_model_stage(model, rest, batches, settings))
    return masks


def prune_oneshot(
    model: nn.Module,
    spec: Unstructured | NM,
    example_inputs: ExampleInputs | None,
    *,
    ignore: Iterable[IgnoreEntry] = (),
    overrides: Mapping[str, float] | None = None,
    calibration: Any = None,
    inplace: bool = False,
    seed: int = 0,
) -> PruneResult:
    """Prune with Wanda or SparseGPT (``spec.importance``) using calibration batches.

    Args:
        model: the model; Linear layers (and Hugging Face Conv1D) are pruned.
        spec: ``Unstructured(sparsity=..., importance="wanda"|"sparsegpt")`` (optionally
            ``allocation="owl"``) or ``NM(2, 4, importance=...)``.
        example_inputs: optional; checked to run with unchanged output shapes after.
        ignore: layers to leave alone.
        overrides: ``{name or regex: sparsity}`` per-layer sparsities (unstructured only).
        calibration: list of batches the model accepts (tensors or dicts of kwargs).
        inplace: mutate ``model`` instead of a copy.
        seed: unused (both methods are deterministic); kept for a uniform signature.

    Returns:
        A :class:`PruneResult` in the masked end state.

    Raises:
        CalibrationError: calibration missing, empty, or not runnable by the model.
        SpecError / TargetError / ShapeError / WeightError: bad request, before mutation.
    """
    del seed
    batches = check_calibration(calibration, spec.importance)
    check_token_ids(model, batches)
    _check_spec(spec, overrides)
    targets, skipped = oneshot_targets(model, ignore)
    resolved = resolve_overrides(model, targets, overrides)
    check_finite(targets)
    if isinstance(spec, NM):
        _check_nm_widths(spec, targets)
    outputs_before = run_example(model, example_inputs) if example_inputs is not None else None
    default = spec.sparsity if spec.sparsity is not None else 0.0
    settings = OneShotSettings(
        method=spec.importance,
        sparsity={t.key: resolved.get(t.key, default) for t in targets},
        nm=(spec.n_keep, spec.m) if isinstance(spec, NM) else None,
        allocation=spec.allocation if isinstance(spec, Unstructured) else "uniform",
        bias_correction=spec.bias_correction,
        reconstruct=spec.reconstruct,
    )
    names = [t.module_name for t in targets]
    layers_before = layer_infos(model, names + list(skipped))
    params_before = count_parameters(model)
    work = model if inplace else copy.deepcopy(model)
    masks = calibrate_and_prune(work, [t.key for t in targets], batches, settings)
    plan = Plan(
        spec=spec.to_dict(), masks=masks, shapes={k: list(m.shape) for k, m in masks.items()},
        skipped=dict(skipped),
    )
    if outputs_before is not None and example_inputs is not None:
        check_same_output_shapes(outputs_before, run_example(work, example_inputs), "pruning")
    return PruneResult(work, plan, spec, layers_before, params_before)
