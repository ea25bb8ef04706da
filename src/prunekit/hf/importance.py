"""Importance of heads, MLP neurons and blocks: magnitude, activation, Taylor.

- magnitude: L2 norm of every weight a head / neuron owns (no data);
- activation: the norm of what a head / neuron adds to the residual stream on calibration
  tokens, ``sum_tokens ||x_h W_o,h^T||^2`` (exact, from per-head Gram matrices);
- taylor: ``|sum(w * dL/dw)|`` over the unit's weights, summed over calibration batches,
  with ``L`` the loss the model returns for batches that carry labels.

Blocks are ranked by block influence, ``mean(1 - cos(input, output))`` over calibration
tokens (a block that barely changes its input matters least).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..distributed import calibration_shard, sum_across_ranks
from ..errors import CalibrationError
from ..importance.gradients import summed_gradients
from ..inputs import call_model
from ..oneshot.calibration import Batch
from .arch import Arch, Attention, Block, Slice
from .calibration import ActivationStats, collect_activation_stats
from .views import module_weight, unit_view, weight_of

UnitTensor = Callable[[Slice, int, int], torch.Tensor]


def _sum_units(slices: list[Slice], n: int, size: int, per_slice: UnitTensor) -> torch.Tensor:
    """``sum over slices of per_slice(slice)``: (n,) float64 on the weights' device."""
    parts = [per_slice(slc, n, size) for slc in slices]
    total = parts[0].clone()
    for part in parts[1:]:
        total += part
    return total


def _magnitude(model: nn.Module) -> UnitTensor:
    def per_slice(slc: Slice, n: int, size: int) -> torch.Tensor:
        view = unit_view(weight_of(model, slc).detach(), slc, n, size)  # (n, size, rest)
        return view.double().pow(2).sum(dim=(1, 2))

    return per_slice


def _taylor(model: nn.Module, grads: dict[str, torch.Tensor]) -> UnitTensor:
    def per_slice(slc: Slice, n: int, size: int) -> torch.Tensor:
        w = unit_view(weight_of(model, slc).detach(), slc, n, size).double()
        g = unit_view(grads[slc.module], slc, n, size).double()
        return (w * g).sum(dim=(1, 2))

    return per_slice


def _head_activation(model: nn.Module, att: Attention, gram: torch.Tensor) -> torch.Tensor:
    slc = next(s for s in att.query if s.module == att.output)
    w_o = unit_view(weight_of(model, slc).detach(), slc, att.num_heads, att.head_dim)
    w_o = w_o.double()  # (H, d, D)
    m = w_o @ w_o.transpose(1, 2)  # (H, d, d)
    return (m * gram).sum(dim=(1, 2))


def head_scores(
    model: nn.Module, arch: Arch, importance: str, stats: ActivationStats | None,
    grads: dict[str, torch.Tensor] | None,
) -> dict[int, torch.Tensor]:
    """Score of every query head, per block index: ``{block: (num_heads,)}``.

    Scores are float64, computed on the model's device and returned on the CPU.
    """
    scores = {}
    for b, block in enumerate(arch.blocks):
        att = block.attention
        if importance == "activation":
            assert stats is not None
            scores[b] = _head_activation(model, att, stats.head_gram[b])
        elif importance == "taylor":
            assert grads is not None
            scores[b] = _sum_units(att.query, att.num_heads, att.head_dim,
                                   _taylor(model, grads)).abs()
        else:
            scores[b] = _sum_units(att.query, att.num_heads, att.head_dim,
                                   _magnitude(model)).sqrt()
    return {b: s.cpu() for b, s in scores.items()}


def _neuron_slices(block: Block) -> list[Slice]:
    return [*block.mlp.inputs, block.mlp.output]


def neuron_scores(
    model: nn.Module, arch: Arch, importance: str, stats: ActivationStats | None,
    grads: dict[str, torch.Tensor] | None,
) -> dict[int, torch.Tensor]:
    """Score of every MLP neuron, per block index: ``{block: (width,)}``.

    Scores are float64, computed on the model's device and returned on the CPU.
    """
    scores = {}
    for b, block in enumerate(arch.blocks):
        width = block.mlp.width
        if importance == "activation":
            assert stats is not None
            out = block.mlp.output
            col = unit_view(weight_of(model, out).detach(), out, width, 1).double()
            scores[b] = stats.neuron_sq[b] * col.pow(2).sum(dim=(1, 2))
        elif importance == "taylor":
            assert grads is not None
            scores[b] = _sum_units(_neuron_slices(block), width, 1, _taylor(model, grads)).abs()
        else:
            scores[b] = _sum_units(_neuron_slices(block), width, 1, _magnitude(model)).sqrt()
    return {b: s.cpu() for b, s in scores.items()}


def block_influence(arch: Arch, stats: ActivationStats) -> torch.Tensor:
    """``mean(1 - cos(in, out))`` per block, (n_blocks,)."""
    return torch.tensor(
        [stats.influence[b] / max(stats.tokens[b], 1) for b in range(len(arch.blocks))],
        dtype=torch.float64,
    )


def loss_gradients(
    model: nn.Module, arch: Arch, batches: list[Batch]
) -> dict[str, torch.Tensor]:
    """Gradients of the loss the model itself returns (``output.loss``, for batches with
    labels), summed over ``batches``, for every weight a head or neuron owns: the data of
    the ``taylor`` head / neuron score.

    Float64 sums on each weight's device (see
    :func:`prunekit.importance.gradients.summed_gradients`); ``.grad`` and
    ``requires_grad`` are left as they were.

    Args:
        model: the Hugging Face model (run in eval mode).
        arch: its blocks, as :func:`.arch.read_arch` reads them.
        batches: calibration batches carrying labels.

    Returns:
        ``{module name: summed gradient of its weight}`` (zeros for a weight the loss
        never reaches).

    Raises:
        CalibrationError: the model returns no loss for a batch (no labels).
    """
    names = sorted({s.module for b in arch.blocks for s in [*b.attention.query,
                    *b.attention.kv, *_neuron_slices(b)]})
    params = {n: module_weight(model, n) for n in names}

    def model_loss(module: nn.Module, batch: Batch, index: int) -> torch.Tensor:
        loss = getattr(call_model(module, batch), "loss", None)
        if not isinstance(loss, torch.Tensor):
            raise CalibrationError(
                f"importance='taylor' needs a loss, but the model returned none for "
                f"calibration batch {index}",
                "pass batches with labels (for a causal LM, labels=input_ids), or use "
                "importance='activation'",
            )
        return loss

    grads, _ = summed_gradients(model, params, batches, model_loss)
    return {n: grads[n] if n in grads else torch.zeros_like(p, dtype=torch.float64)
            for n, p in params.items()}




def check_stats_shape(arch: Arch, stats: ActivationStats) -> None:
    """Every block saw calibration tokens (guards against a model that skips blocks)."""
    missing = [b.name for i, b in enumerate(arch.blocks) if i not in stats.tokens]
    if missing:
        raise CalibrationError(f"calibration never ran through {', '.join(missing)}")


def activation_stats(
    model: nn.Module, arch: Arch, batches: list[Batch], *, distributed: bool | None = None
) -> ActivationStats:
    """:func:`.calibration.collect_activation_stats`, split over the ranks of a
    ``torch.distributed`` job: each rank runs its share of ``batches`` (the same list on
    every rank) and the Gram matrices, sums of squares, influences and token counts are
    summed over the ranks, so every rank gets the statistics of the whole list.

    Args:
        model: the Hugging Face model.
        arch: its blocks, as :func:`.arch.read_arch` reads them.
        batches: calibration batches, the same on every rank.
        distributed: None splits when a process group of two or more is initialized;
            True requires one; False runs every batch here.

    Returns:
        The statistics (a block no rank ran is left out, as in one process).

    Raises:
        SpecError: ``distributed=True`` without a process group.
    """
    shard = calibration_shard(len(batches), distributed)
    if shard is None:
        return collect_activation_stats(model, arch, batches)
    stats = collect_activation_stats(model, arch, shard.local(batches))
    local: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for b, block in enumerate(arch.blocks):
        att = block.attention
        shapes.update({f"{b}/heads": (att.num_heads, att.head_dim, att.head_dim),
                       f"{b}/neurons": (block.mlp.width,), f"{b}/influence": (1,),
                       f"{b}/tokens": (1,)})
        if b in stats.tokens:
            local.update({f"{b}/heads": stats.head_gram[b], f"{b}/neurons": stats.neuron_sq[b],
                          f"{b}/influence": torch.tensor([stats.influence[b]]),
                          f"{b}/tokens": torch.tensor([float(stats.tokens[b])])})
    device = next(model.parameters()).device
    summed = sum_across_ranks(local, shapes, device)
    total = ActivationStats()
    for b in range(len(arch.blocks)):
        tokens = int(summed[f"{b}/tokens"][0])
        if tokens:
            total.head_gram[b] = summed[f"{b}/heads"]
            total.neuron_sq[b] = summed[f"{b}/neurons"]
            total.influence[b] = float(summed[f"{b}/influence"][0])
            total.tokens[b] = tokens
    return total
