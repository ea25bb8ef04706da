"""float32 master weights for training a bf16 / fp16 model.

An optimiser that writes into a bf16 weight loses every update smaller than half the
weight's rounding step (1/256 of the weight in bf16): late in a cosine schedule almost all
of them. fp16 also underflows Adam's ``eps`` and squared gradients, turning updates into
NaN. So the optimiser updates float32 copies of the low-precision parameters (the model
still computes in its own dtype), and each step's result is rounded into the model once.
Parameters already in float32 or float64 are optimised in place, as before.

fp16 gradients also underflow (below 6e-8 they are zero or one subnormal step) and overflow
(above 65504 they are inf, which would poison the master copies). A model with fp16
parameters is therefore stepped with dynamic loss scaling (``torch.amp.GradScaler``): the
loss is multiplied before the backward pass, the float32 gradients are divided back, and a
step whose gradients are not finite is skipped while the scale is halved. bf16 has
float32's range and needs none.
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
        half = next((p for p, _ in self._pairs if p.dtype == torch.float16), None)
        self.scaler = torch.amp.GradScaler(half.device.type if half is not None else "cpu",
                                           enabled=half is not None)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> bool:
        """``loss.backward()`` (loss-scaled for an fp16 model), then ``optimizer.step()``
        on the master copies, rounded into the model.

        Returns:
            False if the step was skipped (fp16 gradients that were not finite), else True.
        """
        self.scaler.scale(loss).backward()
        self.gradients_in()
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
        self.scaler.step(optimizer)
        self.scaler.update()
        self.weights_out()
        return not self.scaler.is_enabled() or self.scaler.get_scale() >= scale

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
