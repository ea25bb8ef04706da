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

from ..errors import CalibrationError
from ..inputs import call_model, eval_mode
from ..oneshot.calibration import Batch
from .arch import Arch, Attention, Block, Slice
from .calibration import ActivationStats
from .views import module_weight, unit_view, weight_of

UnitTensor = Callable[[Slice, int, int], torch.Tensor]


def _sum_units(slices: list[Slice], n: int, size: int, per_slice: UnitTensor) -> torch.Tensor:
    total = torch.zeros(n, dtype=torch.float64)
    for slc in slices:
        total += per_slice(slc, n, size)
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
    """Score of every query head, per block index: ``{block: (num_heads,)}``."""
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
    return scores


def _neuron_slices(block: Block) -> list[Slice]:
    return [*block.mlp.inputs, block.mlp.output]


def neuron_scores(
    model: nn.Module, arch: Arch, importance: str, stats: ActivationStats | None,
    grads: dict[str, torch.Tensor] | None,
) -> dict[int, torch.Tensor]:
    """Score of every MLP neuron, per block index: ``{block: (width,)}``."""
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
    return scores


def block_influence(arch: Arch, stats: ActivationStats) -> torch.Tensor:
    """``mean(1 - cos(in, out))`` per block, (n_blocks,)."""
    return torch.tensor(
        [stats.influence[b] / max(stats.tokens[b], 1) for b in range(len(arch.blocks))],
        dtype=torch.float64,
    )


def taylor_gradients(
    model: nn.Module, arch: Arch, batches: list[Batch]
) -> dict[str, torch.Tensor]:
    """Sum over batches of ``dL/dW`` for every weight a head or neuron owns.

    Raises:
        CalibrationError: the model returns no loss for a batch (no labels).
    """
    names = sorted({s.module for b in arch.blocks for s in [*b.attention.query,
                    *b.attention.kv, *_neuron_slices(b)]})
    params = [module_weight(model, n) for n in names]
    flags = [p.requires_grad for p in params]
    grads = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in zip(names, params,
                                                                          strict=True)}
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad(), eval_mode(model):
            for i, batch in enumerate(batches):
                loss = getattr(call_model(model, batch), "loss", None)
                if not isinstance(loss, torch.Tensor):
                    raise CalibrationError(
                        f"importance='taylor' needs a loss, but the model returned none for "
                        f"calibration batch {i}",
                        "pass batches with labels (for a causal LM, labels=input_ids), or use "
                        "importance='activation'",
                    )
                for n, g in zip(names, torch.autograd.grad(loss, params, allow_unused=True),
                                strict=True):
                    if g is not None:
                        grads[n] += g.double()
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
    return grads


def check_stats_shape(arch: Arch, stats: ActivationStats) -> None:
    """Every block saw calibration tokens (guards against a model that skips blocks)."""
    missing = [b.name for i, b in enumerate(arch.blocks) if i not in stats.tokens]
    if missing:
        raise CalibrationError(f"calibration never ran through {', '.join(missing)}")
