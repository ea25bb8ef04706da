"""The logical state of a model in any end state, and how to restore that end state.

The logical state uses the *original* state-dict keys (``fc.weight``, never
``fc.weight_orig`` / ``fc.weight_mask`` or CSR parts): a masked weight is its effective
weight plus its keep-mask, a sparse layer its dense weight. So one saved file loads into a
freshly built model with ``load_state_dict(strict=True)``; masks and sparse kernels are
then put back on top (:func:`prunekit.io.load.load`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..apply.masks import effective_weight, masked_modules
from ..errors import UnsupportedModelError
from ..sparse.convert import sparse_kernels
from ..sparse.modules import dense_weight
from ..targets import qualified_name


@dataclass(frozen=True)
class LogicalTensor:
    """One state-dict entry: its value and, if it was masked, its keep-mask."""

    value: torch.Tensor
    mask: torch.Tensor | None


def logical_state(model: nn.Module) -> dict[str, LogicalTensor]:
    """``{original state-dict key: LogicalTensor}`` for ``model`` in any end state."""
    raw = model.state_dict()
    odd = [k for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise UnsupportedModelError(
            f"state-dict entries that are not tensors cannot be saved without pickle: {odd[:5]}",
            "store such extra state as tensors (buffers) or rebuild it in the model factory",
        )
    state = {k: LogicalTensor(v.detach(), None) for k, v in raw.items()}
    for name, module, param in masked_modules(model):
        state.pop(qualified_name(name, f"{param}_orig"))
        mask = state.pop(qualified_name(name, f"{param}_mask")).value
        weight = effective_weight(module, param)
        state[qualified_name(name, param)] = LogicalTensor(weight, mask.bool())
    for name in sparse_kernels(model):
        module = model.get_submodule(name)
        for key in [k for k in state if k.rpartition(".")[0] == name]:  # crow, col, values
            state.pop(key)
        state[qualified_name(name, "weight")] = LogicalTensor(dense_weight(module), None)
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor):
            state[qualified_name(name, "bias")] = LogicalTensor(bias.detach(), None)
    return state


def end_states(model: nn.Module, physical: bool) -> list[str]:
    """The end states a model is in (``["dense"]`` if none)."""
    states = ["physical"] if physical else []
    if masked_modules(model):
        states.append("masked")
    if sparse_kernels(model):
        states.append("sparse")
    return states or ["dense"]
