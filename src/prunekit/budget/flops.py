"""MACs of one forward pass, attributed to the weights the matrix products read.

torch's FLOP counter (:class:`torch.utils.flop_counter.FlopCounterMode`) counts the whole
model; a dispatch mode running inside it gives each counted op's MACs to the parameter it
reads (a convolution's weight, a linear layer's transposed weight), matched by storage and
element count. A convolution or matrix product costs ``uses * weight.numel()`` MACs, so the
MACs of a pruned model follow from its weight shapes; what no weight owns (attention scores)
is returned as the rest.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from ..inputs import ExampleInputs, call_model, eval_mode


class _Attribute(TorchDispatchMode):
    """Give the FLOPs of every op the counter knows to the parameter it reads."""

    def __init__(self, weights: dict[tuple[int, int], str]) -> None:
        super().__init__()
        self.weights = weights
        self.flops: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(getattr(func, "_overloadpacket", None))
        if formula is not None:
            for arg in tree_flatten((args, kwargs))[0]:
                key = self._weight(arg)
                if key is not None:
                    self.flops[key] += int(formula(*args, **kwargs, out_val=out))
                    break
        return out

    def _weight(self, arg: Any) -> str | None:
        if not isinstance(arg, torch.Tensor) or arg.device.type == "meta":
            return None
        try:
            return self.weights.get((arg.data_ptr(), arg.numel()))
        except RuntimeError:  # tensors without storage
            return None


def weight_macs(model: nn.Module, example_inputs: ExampleInputs) -> tuple[dict[str, int], int]:
    """MACs of one forward pass per parameter, and the total.

    Args:
        model: the model (run once in eval mode without gradients; not changed).
        example_inputs: inputs it accepts.

    Returns:
        ``({parameter name: MACs of the ops that read it}, total MACs)``; the total is what
        :func:`prunekit.measure.counting.count_macs` reports.
    """
    weights = {(p.data_ptr(), p.numel()): name for name, p in model.named_parameters()
               if p.dim() >= 2}
    counter = FlopCounterMode(display=False)
    attribute = _Attribute(weights)
    with torch.no_grad(), eval_mode(model), counter, attribute:
        call_model(model, example_inputs)
    return ({k: v // 2 for k, v in attribute.flops.items()},
            int(counter.get_total_flops()) // 2)
