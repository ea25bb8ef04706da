"""Heads, MLP neurons and blocks removed from a checkpoint folder: two walks over the blocks.

Removing heads or neurons changes tensor shapes, and blocks are ranked against each other,
so nothing can be cut before every block has been seen. The *scoring walk* loads one block
at a time, runs the calibration activations through it (the dense model's, as the
in-memory path's single pass gives them), keeps its head and neuron scores and its block
influence (a few numbers per unit) and frees it. The decision is then taken exactly as in
memory, and the same surgery runs on a copy of the ``meta`` model: it gives the pruned
shapes (so the output file's layout), the kept indices and the config. The *cutting walk*
streams every output tensor: read from the checkpoint, its kept rows and columns selected,
written. Peak memory: one block plus the calibration activations, then one tensor.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import SpecError
from ..hf.arch import Arch, read_arch
from ..hf.calibration import ActivationStats, block_activation_stats
from ..hf.importance import block_influence, head_scores, neuron_scores
from ..hf.prune import Decision, apply_decision, decide
from ..hf.save_guard import guard_save_pretrained
from ..hf.surgery import Changes
from ..oneshot.calibration import Batch
from ..specs import TransformerStructured
from .memory import return_freed_memory
from .skeleton import Reader, Skeleton, installed, load_block
from .walk import bar, first_block_inputs, inputs_to, to_device
from .writer import TensorFileWriter

logger = logging.getLogger(__name__)


def check_structured(spec: TransformerStructured) -> None:
    """Refuse what needs the whole model at once.

    Raises:
        SpecError: ``importance="taylor"`` (a backward pass through every block).
    """
    if spec.importance == "taylor":
        raise SpecError(
            "importance='taylor' needs the gradient of the model's loss, a backward pass "
            "through every block at once, which prune_pretrained does not hold",
            "use importance='activation' or 'magnitude', or prune in memory with pk.prune",
        )


def check_decidable(spec: TransformerStructured, arch: Arch, skip: set[int]) -> None:
    """Raise what :func:`decide` would raise on these blocks, before the scoring walk.

    Counts (heads per key/value group, neurons, blocks) are checked on zero scores.
    """
    heads = {b: torch.zeros(x.attention.num_heads, dtype=torch.float64)
             for b, x in enumerate(arch.blocks)}
    neurons = {b: torch.zeros(x.mlp.width, dtype=torch.float64) for b, x in enumerate(arch.blocks)}
    decide(spec, arch, heads, neurons, torch.zeros(len(arch.blocks), dtype=torch.float64), skip)


@dataclass
class Scores:
    """What the scoring walk keeps, by block index."""

    heads: dict[int, torch.Tensor] = field(default_factory=dict)
    neurons: dict[int, torch.Tensor] = field(default_factory=dict)
    influence: list[float] = field(default_factory=list)


def _score_block(model: nn.Module, one: Arch, spec: TransformerStructured,
                 stats: ActivationStats | None, scores: Scores, b: int) -> None:
    if spec.heads and spec.explicit_heads is None:
        scores.heads[b] = head_scores(model, one, spec.importance, stats, None)[0]
    if spec.neurons:
        scores.neurons[b] = neuron_scores(model, one, spec.importance, stats, None)[0]
    if stats is not None:
        scores.influence.append(float(block_influence(one, stats)[0]))


def score_walk(
    skeleton: Skeleton, arch: Arch, spec: TransformerStructured, batches: list[Batch] | None,
    device: torch.device, offload: bool, read: Reader, progress: bool = False,
) -> Scores:
    """Load, score and free each block in turn; the dense activations flow block to block.

    Args:
        skeleton: the meta model and where its tensors are stored.
        arch: the blocks' layout, read from the meta model.
        spec: what to rank.
        batches: calibration batches, or None when the spec needs none.
        device: where blocks are loaded and run.
        offload: keep activations in CPU memory between blocks.
        read: reads stored tensors.
        progress: show a bar over the blocks on a terminal.

    Returns:
        The head and neuron scores and the block influences, as the in-memory path
        computes them.
    """
    scores = Scores()
    storage = torch.device("cpu") if offload else device
    inputs = None
    if batches is not None:
        batches = [to_device(b, device) for b in batches]
        inputs = first_block_inputs(skeleton, batches, device, storage, read)
    for b, layout in enumerate(bar(arch.blocks, "scoring blocks", "block", progress)):
        one = Arch(arch.family, arch.blocks_path, [layout], arch.config)
        block = load_block(skeleton, b, read, device)
        with installed(skeleton, b, block), torch.no_grad():
            stats = None
            if inputs is not None:
                stats, outputs = block_activation_stats(skeleton.model, one,
                                                        inputs_to(inputs, device))
                inputs = inputs_to(outputs, storage)
                del outputs
            _score_block(skeleton.model, one, spec, stats, scores, b)
        del block, stats
        return_freed_memory()
        logger.info("block %d/%d scored", b + 1, len(arch.blocks))
    return scores


@dataclass
class Cut:
    """The decision applied to a copy of the meta model: shapes, kept indices, config."""

    model: nn.Module
    decision: Decision
    changes: Changes
    survivors: list[int]

    def source_key(self, key: str, blocks_path: str) -> str:
        """The original model's key of the pruned model's ``key`` (blocks renumbered)."""
        prefix = blocks_path + "."
        if not key.startswith(prefix):
            return key
        index, _, rest = key[len(prefix):].partition(".")
        return f"{prefix}{self.survivors[int(index)]}.{rest}"


def plan_cut(skeleton: Skeleton, arch: Arch, spec: TransformerStructured, scores: Scores,
             skip: set[int]) -> Cut:
    """Decide what goes (raises before anything is written) and cut a meta copy."""
    layer_s = torch.tensor(scores.influence, dtype=torch.float64) if scores.influence else None
    decision = decide(spec, arch, scores.heads or None, scores.neurons or None, layer_s, skip)
    pruned = copy.deepcopy(skeleton.model)
    changes = apply_decision(pruned, read_arch(pruned), decision)
    reason = guard_save_pretrained(pruned, read_arch(pruned))
    if reason is not None:
        logger.warning("the pruned model's config cannot describe it (%s): from_pretrained "
                       "will not load the output; pk.load will", reason)
    survivors = [b for b in range(len(arch.blocks)) if b not in decision.layers]
    return Cut(pruned, decision, changes, survivors)


def _select(value: torch.Tensor, kept: dict[int, list[int]]) -> torch.Tensor:
    for dim, keep in sorted(kept.items()):
        value = value.index_select(dim, torch.tensor(keep, dtype=torch.long))
    return value


def cut_walk(skeleton: Skeleton, cut: Cut, read: Reader, writer: TensorFileWriter,
             progress: bool = False) -> dict[str, tuple[int, int]]:
    """Write every tensor of the pruned model, each read and cut on its own.

    Returns:
        ``{original key: (elements kept, elements before)}`` of every tensor that lost
        elements (those of removed blocks keep none).
    """
    counts: dict[str, tuple[int, int]] = {}
    for key in bar(list(writer.entries), "writing tensors", "tensor", progress):
        source = cut.source_key(key, skeleton.blocks_path)
        value = skeleton.read_value(source, read)
        kept = cut.changes.kept.get(key, {})
        if kept:
            total = value.numel()
            value = _select(value, kept)
            counts[source] = (value.numel(), total)
        writer.write(key, value)
    for b in cut.decision.layers:
        for name, param in skeleton.blocks[b].named_parameters():
            counts[f"{skeleton.block_name(b)}.{name}"] = (0, param.numel())
    return counts
