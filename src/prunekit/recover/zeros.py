"""The pruned zeros of weights that carry no mask, held at zero while training.

A masked model keeps its pruned weights at zero by itself (every forward multiplies by the
mask). After :func:`prunekit.finalize`, or loading a finalized artefact, the masks are
gone and only the zeros remain: an optimiser step would revive them. Training held by
:class:`ZeroHold` writes those zeros back after every step, which for element-wise
optimisers (SGD, Adam and their variants) trains the other weights exactly as a mask would,
and leaves the model in the end state it came in (no mask is added).

Which zeros count as pruned: the exact zeros of every trainable weight of two or more
dims that no prunekit mask covers. A weight that is entirely zero is held too (global
pruning can remove a whole layer), with a warning naming it: a weight initialised to zero
(a LoRA ``B``, a zero-initialised output projection) would need ``keep_zeros=False``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..apply.masks import masked_modules

log = logging.getLogger(__name__)


def unmasked_zeros(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{parameter name: bool tensor, True at its exact zeros}`` for every trainable
    weight (2+ dims) without a prunekit mask that holds zeros.

    Args:
        model: any model.

    Returns:
        The zero patterns, on each weight's device.
    """
    masked = {id(getattr(module, f"{param}_orig")) for _, module, param in masked_modules(model)}
    found = {}
    for name, param in model.named_parameters():
        if param.dim() < 2 or not param.requires_grad or id(param) in masked:
            continue
        zeros = param.detach() == 0
        if bool(zeros.any()):
            found[name] = zeros
    return found


class ZeroHold:
    """Writes the pruned zeros of unmasked weights back after each optimiser step.

    Args:
        model: the model being trained.
        keep_zeros: hold them (True), or train every weight freely (False: nothing held).
    """

    def __init__(self, model: nn.Module, keep_zeros: bool = True) -> None:
        self.zeros = unmasked_zeros(model) if keep_zeros else {}
        self._params = {name: model.get_parameter(name) for name in self.zeros}
        if self.zeros:
            held = sum(int(z.sum()) for z in self.zeros.values())
            log.info("holding %d pruned zeros of %d unmasked weights at zero (keep_zeros=False "
                     "trains them): %s", held, len(self.zeros), ", ".join(sorted(self.zeros)))
        empty = sorted(name for name, z in self.zeros.items() if bool(z.all()))
        if empty:
            log.warning("%s %s entirely zero and held at zero as pruned; if %s initialised "
                        "so, train with keep_zeros=False", ", ".join(empty),
                        "is" if len(empty) == 1 else "are",
                        "it was" if len(empty) == 1 else "they were")

    def __call__(self) -> None:
        """Set every held position to zero again (call after each optimiser step)."""
        with torch.no_grad():
            for name, zeros in self.zeros.items():
                self._params[name].masked_fill_(zeros, 0.0)
