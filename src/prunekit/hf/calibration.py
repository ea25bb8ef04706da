"""Calibration hooks for head / neuron / block importance (one forward pass, no mutation).

For every block it accumulates, over real (non-padded) calibration tokens:

- the per-head Gram matrices ``X_h^T X_h`` of the attention output projection's input,
  (heads, head_dim, head_dim);
- the per-neuron sum of squares of the MLP output projection's input, (width,);
- the block influence ``sum(1 - cos(block input, block output))`` and the token count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..inputs import call_model, eval_mode
from ..oneshot.calibration import Batch, BlockInput, block_output, run_block, token_mask
from .arch import Arch


@dataclass
class ActivationStats:
    """Accumulated statistics, keyed by block index."""

    head_gram: dict[int, torch.Tensor] = field(default_factory=dict)
    neuron_sq: dict[int, torch.Tensor] = field(default_factory=dict)
    influence: dict[int, float] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)


def _rows(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None and x.dim() == 3 and x.shape[:2] == mask.shape:
        return x[mask.to(x.device)].double()  # (real tokens, features)
    return x.reshape(-1, x.shape[-1]).double()  # (tokens, features)


def _add(store: dict[int, Any], key: int, value: Any) -> None:
    store[key] = store[key] + value if key in store else value


class _Hooks:
    def __init__(self, model: nn.Module, arch: Arch, stats: ActivationStats) -> None:
        self.mask: torch.Tensor | None = None
        self.stats = stats
        self.inputs: dict[int, torch.Tensor] = {}
        self.handles = []
        for b, block in enumerate(arch.blocks):
            att = block.attention
            self.handles.append(model.get_submodule(att.output).register_forward_hook(
                self._heads(b, att.num_heads, att.head_dim)))
            self.handles.append(model.get_submodule(block.mlp.output.module).register_forward_hook(
                self._neurons(b)))
            module = model.get_submodule(block.name)
            self.handles.append(module.register_forward_pre_hook(self._block_in(b),
                                                                 with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._block_out(b)))

    def _heads(self, b: int, heads: int, head_dim: int) -> Callable[..., None]:
        def hook(_: nn.Module, inputs: tuple[Any, ...], __: Any) -> None:
            x = _rows(inputs[0].detach(), self.mask).reshape(-1, heads, head_dim)  # (n, H, d)
            _add(self.stats.head_gram, b, torch.einsum("nhd,nhe->hde", x, x))

        return hook

    def _neurons(self, b: int) -> Callable[..., None]:
        def hook(_: nn.Module, inputs: tuple[Any, ...], __: Any) -> None:
            _add(self.stats.neuron_sq, b, _rows(inputs[0].detach(), self.mask).pow(2).sum(0))

        return hook

    def _block_in(self, b: int) -> Callable[..., None]:
        def hook(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            first = args[0] if args else kwargs["hidden_states"]
            self.inputs[b] = first.detach()

        return hook

    def _block_out(self, b: int) -> Callable[..., None]:
        def hook(_: nn.Module, __: Any, out: Any) -> None:
            x_in = _rows(self.inputs.pop(b), self.mask)
            x_out = _rows(block_output(out).detach(), self.mask)
            cos = torch.nn.functional.cosine_similarity(x_in, x_out, dim=-1)
            _add(self.stats.influence, b, float((1 - cos).sum()))
            _add(self.stats.tokens, b, int(x_in.shape[0]))

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def collect_activation_stats(
    model: nn.Module, arch: Arch, batches: list[Batch]
) -> ActivationStats:
    """Run ``model`` on every calibration batch (eval mode, no grad) and accumulate stats."""
    stats = ActivationStats()
    hooks = _Hooks(model, arch, stats)
    try:
        with torch.no_grad(), eval_mode(model):
            for batch in batches:
                hooks.mask = token_mask(batch)
                call_model(model, batch)
    finally:
        hooks.remove()
    return stats


def block_activation_stats(
    model: nn.Module, arch: Arch, inputs: list[BlockInput]
) -> tuple[ActivationStats, list[BlockInput]]:
    """The statistics of the one block ``arch`` lists, from its cached ``inputs`` (eval
    mode, no grad), and the inputs of the next block (this block's outputs).

    The block-by-block twin of :func:`collect_activation_stats`: ``model`` holds the real
    block at the place ``arch.blocks[0].name`` names (the others may stay on ``meta``).
    """
    assert len(arch.blocks) == 1
    stats = ActivationStats()
    hooks = _Hooks(model, arch, stats)
    block = model.get_submodule(arch.blocks[0].name)
    outputs = []
    try:
        with torch.no_grad(), eval_mode(block):
            for item in inputs:
                hooks.mask = item.token_mask
                outputs += run_block(block, [item])
    finally:
        hooks.remove()
    return stats, outputs
