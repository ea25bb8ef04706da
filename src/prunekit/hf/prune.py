"""Head / neuron / block removal for Hugging Face transformers: validate, score, decide, cut."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SpecError
from ..inputs import run_example
from ..oneshot.calibration import Batch, check_calibration, check_token_ids
from ..pipeline.request import Request
from ..pipeline.verify import check_still_runs
from ..plan import Plan
from ..result import PruneResult
from ..specs import TransformerStructured
from ..structured import refuse_masked
from ..summary import LayerInfo, count_parameters
from ..targets import IgnoreEntry, check_ignore, matches
from .arch import Arch, Block, read_arch
from .calibration import ActivationStats
from .importance import (
    activation_stats,
    block_influence,
    check_stats_shape,
    head_scores,
    loss_gradients,
    neuron_scores,
)
from .save_guard import guard_save_pretrained
from .select import (
    check_explicit_heads,
    heads_to_remove,
    kv_heads_removed,
    layers_to_remove,
    lowest,
    neurons_to_remove_count,
)
from .surgery import Changes, prune_block, remove_blocks, update_config

logger = logging.getLogger(__name__)


@dataclass
class Decision:
    """What goes, by original block index."""

    layers: list[int]
    heads: dict[int, list[int]]
    kv_heads: dict[int, list[int]]
    neurons: dict[int, list[int]]


def ignored_blocks(model: nn.Module, arch: Arch, ignore: Iterable[IgnoreEntry]) -> set[int]:
    """Indices of the blocks that ``ignore`` names, or that hold a module it names."""
    entries = list(ignore)
    hit = set()
    for b, block in enumerate(arch.blocks):
        inside = [(n, m) for n, m in model.named_modules()
                  if n == block.name or n.startswith(block.name + ".")]
        if any(matches(e, n, m) for e in entries for n, m in inside):
            hit.add(b)
    return hit


def refuse_overrides(overrides: object) -> None:
    """TransformerStructured takes no per-layer amounts.

    Raises:
        SpecError: ``overrides`` were given.
    """
    if overrides:
        raise SpecError("overrides do not apply to TransformerStructured",
                        "list heads per layer with heads={layer: [...]}, or use ignore=")


def calibration_purpose(spec: TransformerStructured) -> str:
    """What the calibration batches are for, as errors name it."""
    return (f"importance={spec.importance!r}" if spec.importance != "magnitude"
            else "ranking layers")


def needs_data(spec: TransformerStructured) -> bool:
    """The spec ranks by activations or gradients, or ranks blocks (by their influence)."""
    return spec.importance != "magnitude" or (isinstance(spec.layers, int) and spec.layers > 0)


def _decide_heads(
    spec: TransformerStructured, arch: Arch, scores: dict[int, torch.Tensor], skip: set[int]
) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    explicit = spec.explicit_heads
    heads: dict[int, list[int]] = {}
    for b, block in enumerate(arch.blocks):
        att = block.attention
        if explicit is not None:
            if b in explicit:
                heads[b] = check_explicit_heads(explicit[b], att.num_heads, att.num_kv_heads,
                                                block.name)
        elif b not in skip and spec.heads:
            heads[b] = heads_to_remove(scores[b], spec.heads, att.num_kv_heads, block.name)
    if explicit is not None:
        bad = [b for b in explicit if not 0 <= b < len(arch.blocks)]
        if bad:
            raise SpecError(f"heads names blocks {bad}; the model has 0..{len(arch.blocks) - 1}")
    kv = {b: kv_heads_removed(h, arch.blocks[b].attention.num_heads,
                              arch.blocks[b].attention.num_kv_heads) for b, h in heads.items()}
    return heads, kv


def decide(
    spec: TransformerStructured, arch: Arch, head_s: dict[int, torch.Tensor] | None,
    neuron_s: dict[int, torch.Tensor] | None, layer_s: torch.Tensor | None, skip: set[int],
) -> Decision:
    """Turn scores into what to remove (pure; raises before anything is mutated)."""
    n = len(arch.blocks)
    if isinstance(spec.layers, int) and spec.layers > 0:
        assert layer_s is not None
        layer_s = layer_s.clone()
        layer_s[list(skip)] = float("inf")
    layers = layers_to_remove(layer_s if layer_s is not None else torch.zeros(n), spec.layers)
    heads, kv = ({}, {}) if not spec.heads else _decide_heads(spec, arch, head_s or {}, skip)
    neurons = {}
    if spec.neurons:
        assert neuron_s is not None
        for b, block in enumerate(arch.blocks):
            if b not in skip:
                count = neurons_to_remove_count(spec.neurons, block.mlp.width, spec.round_to,
                                                block.name)
                neurons[b] = lowest(neuron_s[b], count)
    gone = set(layers)
    return Decision(
        layers,
        {b: h for b, h in heads.items() if b not in gone and h},
        {b: h for b, h in kv.items() if b not in gone and h},
        {b: h for b, h in neurons.items() if b not in gone and h},
    )


def _scores(
    model: nn.Module, arch: Arch, spec: TransformerStructured, batches: list[Batch] | None
) -> tuple[dict[int, torch.Tensor] | None, dict[int, torch.Tensor] | None, torch.Tensor | None]:
    stats: ActivationStats | None = None
    if batches is not None:
        stats = activation_stats(model, arch, batches)  # split over ranks, if any
        check_stats_shape(arch, stats)
    grads = loss_gradients(model, arch, batches) if spec.importance == "taylor" and (
        batches is not None) else None
    need_heads = bool(spec.heads) and spec.explicit_heads is None
    head_s = head_scores(model, arch, spec.importance, stats, grads) if need_heads else None
    neuron_s = neuron_scores(model, arch, spec.importance, stats, grads) if spec.neurons else None
    layer_s = block_influence(arch, stats) if stats is not None else None
    return head_s, neuron_s, layer_s


def _layer_infos(model: nn.Module, arch: Arch, removed: list[int]) -> dict[str, LayerInfo]:
    """Weight shapes before, keyed by the names the surviving layers will have after."""
    infos = {}
    prefix = f"{arch.blocks_path}." if arch.blocks_path else ""
    for b, block in enumerate(arch.blocks):
        if b in removed:
            continue
        new_name = f"{prefix}{b - sum(1 for r in removed if r < b)}"
        for name, module in model.get_submodule(block.name).named_modules():
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dim() == 2:
                key = new_name + (f".{name}" if name else "")
                infos[key] = LayerInfo(type(module).__name__, tuple(weight.shape))
    return infos


def _config_values(arch: Arch, new_arch: Arch, decision: Decision) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if decision.layers:
        values["num_hidden_layers"] = len(new_arch.blocks)
        layer_types = getattr(arch.config, "layer_types", None)
        if isinstance(layer_types, list) and len(layer_types) == len(arch.blocks):
            values["layer_types"] = [t for i, t in enumerate(layer_types)
                                     if i not in decision.layers]
    widths = {b.mlp.width for b in new_arch.blocks}
    if decision.neurons and len(widths) == 1:
        key = "n_inner" if arch.family == "gpt2" else "intermediate_size"
        values[key] = widths.pop()
    heads = {(b.attention.num_heads, b.attention.num_kv_heads) for b in new_arch.blocks}
    if decision.heads and arch.family == "llama" and len(heads) == 1:
        num_heads, kv = heads.pop()
        values.update(num_attention_heads=num_heads, num_key_value_heads=kv,
                      head_dim=new_arch.blocks[0].attention.head_dim)
    return values


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def apply_decision(model: nn.Module, arch: Arch, decision: Decision) -> Changes:
    """Mutate ``model``: delete blocks, then cut heads and neurons, then fix the config."""
    changes = Changes()
    remove_blocks(model, arch, decision.layers, changes)
    new_arch = read_arch(model)
    new_index = {b: b - sum(1 for r in decision.layers if r < b)
                 for b in range(len(arch.blocks)) if b not in decision.layers}
    for old, new in new_index.items():
        block: Block = new_arch.blocks[new]
        prune_block(model, new_arch, block, decision.heads.get(old, []),
                    decision.kv_heads.get(old, []), decision.neurons.get(old, []), changes)
    values = _config_values(arch, read_arch(model), decision)
    if values and new_arch.config is not None:
        changes.attributes["config_before"] = {
            k: _json(getattr(new_arch.config, k, None)) for k in values
        }
    update_config(new_arch.config, values, changes)
    return changes


class TransformerPipeline:
    """Remove heads, MLP neurons and blocks from a BERT, GPT-2 or Llama model.

    Args:
        spec: what to remove and how to rank it.
        request: ignore list (blocks, or modules inside them), calibration batches (for
            ``activation`` / ``taylor`` importance and for ranking blocks by influence when
            ``spec.layers`` is a count), example inputs (checked to run after).

    The result's plan has kept indices, shapes, changed attributes (the config under
    ``"config"``) and removed blocks.
    """

    name = "transformer pruning"

    def __init__(self, spec: TransformerStructured, request: Request) -> None:
        self.spec = spec
        self.request = request

    def prepare(self, model: nn.Module) -> None:
        request, spec = self.request, self.spec
        refuse_overrides(request.overrides)
        request.refuse_unused(("calibration",) if needs_data(spec) else (),
                              f"{self.name} with importance={spec.importance!r} and "
                              f"layers={spec.layers!r}")
        self.arch = read_arch(model)
        refuse_masked(model, "removing heads, neurons or layers")
        skip = ignored_blocks(model, self.arch, check_ignore(model, request.ignore))
        batches = None
        if needs_data(spec):
            batches = check_calibration(request.calibration, calibration_purpose(spec))
            check_token_ids(model, batches)
        head_s, neuron_s, layer_s = _scores(model, self.arch, spec, batches)
        self.decision = decide(spec, self.arch, head_s, neuron_s, layer_s, skip)
        self.skipped = {self.arch.blocks[b].name: "ignored" for b in sorted(skip)}
        self.outputs_before = (run_example(model, request.example_inputs)
                               if request.example_inputs is not None else None)
        self.layers_before = _layer_infos(model, self.arch, self.decision.layers)
        self.params_before = count_parameters(model)

    def writes(self) -> list[str]:
        return []  # surgery replaces parameters and modules; it never writes into the old

    def mutate(self, work: nn.Module) -> None:
        self.changes = apply_decision(work, self.arch, self.decision)
        reason = guard_save_pretrained(work, read_arch(work))
        if reason is not None:
            logger.warning(
                "the pruned model's config cannot describe it (%s): save_pretrained will "
                "refuse; save with pk.save(result, path) and load with pk.load(path)", reason)

    def verify(self, work: nn.Module) -> None:
        if self.outputs_before is not None and self.request.example_inputs is not None:
            check_still_runs(work, self.request.example_inputs, self.outputs_before, self.name)

    def result(self, work: nn.Module) -> PruneResult:
        changes = self.changes
        plan = Plan(
            spec=self.spec.to_dict(), kept=changes.kept,
            shapes={k: list(v.shape) for k, v in work.state_dict().items()},
            attributes=changes.attributes, removed_modules=changes.removed_modules,
            skipped=self.skipped,
        )
        return PruneResult(work, plan, self.spec, self.layers_before, self.params_before)
