"""float32 master weights for training a bf16 / fp16 model.

An optimiser that writes into a bf16 weight loses every update smaller than half the
weight's rounding step (1/256 of the weight in bf16): late in a cosine schedule almost all
of them. fp16 also underflows Adam's ``eps`` and squared gradients, turning updates into
NaN. So the optimiser updates float32 copies of the low-precision parameters (the model
still computes in its own dtype), and each step's result is rounded into the model once.
Parameters already in float32 or float64 are optimised in place, as before.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

LOW_PRECISION = (torch.float16, torch.bfloat16)


class MasterWeights:
    """The parameters an optimiser should update: a float32 copy of each bf16 / fp16
    parameter, the parameter itself otherwise.

    Args:
        params: the model's trainable parameters.
    """

    def __init__(self, params: Iterable[nn.Parameter]) -> None:
        self._masters: dict[int, nn.Parameter] = {}
        self._pairs: list[tuple[nn.Parameter, nn.Parameter]] = []
        for param in params:
            if param.dtype in LOW_PRECISION and id(param) not in self._masters:
                master = nn.Parameter(param.detach().float().clone())
                self._masters[id(param)] = master
                self._pairs.append((param, master))

    def __getitem__(self, param: nn.Parameter) -> nn.Parameter:
        """What the optimiser updates for ``param``."""
        return self._masters.get(id(param), param)

    def gradients_in(self) -> None:
        """Move the model's gradients onto the master copies (as float32)."""
        for param, master in self._pairs:
            master.grad = None if param.grad is None else param.grad.float()
            param.grad = None

    def weights_out(self) -> None:
        """Round the updated master copies into the model's parameters."""
        with torch.no_grad():
            for param, master in self._pairs:
                param.copy_(master)

    def refresh(self) -> None:
        """Adopt what something else (a pruner) wrote into the model's parameters: entries
        that no longer equal their rounded master copy are copied in; the others keep the
        master's extra precision."""
        with torch.no_grad():
            for param, master in self._pairs:
                unchanged = param == master.to(param.dtype)
                master.copy_(torch.where(unchanged, master, param.float()))
