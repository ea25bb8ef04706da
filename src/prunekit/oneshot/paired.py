"""Paired calibration of one block: the block being pruned beside its unpruned copy.

For ``reconstruct="dense"`` every targeted layer needs, token for token, the input the
pruned model gives it (``x_p``) and the input the unpruned model gives it (``x_d``). Both
copies of the block run on the same batch, each from its own cached inputs, and hooks
accumulate ``sum x_p x_p^T``, ``sum x_p x_d^T`` and both input sums; no token is kept
beyond one batch.

A block's layers are calibrated in the stages :func:`call_stages` finds, one after another:
a stage's statistics are gathered after the stages before it were pruned, so each layer
corrects what they left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import CalibrationError
from .calibration import BlockInput, StopForward, check_all_ran, layer_rows


def call_stages(
    block: nn.Module, modules: Mapping[str, nn.Module], item: BlockInput
) -> tuple[list[list[str]], bool]:
    """The targeted layers of ``block`` in the order it calls them, one stage per input.

    Consecutive layers that read the very same input tensor (query, key and value) share a
    stage. Also returns whether every layer ran exactly once (then a pass may stop after a
    stage's last layer).

    Raises:
        CalibrationError: a targeted layer never runs when the block does.
    """
    calls: list[tuple[str, torch.Tensor]] = []
    handles = [m.register_forward_pre_hook(
        lambda _m, args, key=key: calls.append((key, args[0]))) for key, m in modules.items()]
    try:
        block(*item.args, **item.kwargs)
    finally:
        for handle in handles:
            handle.remove()
    stages: list[list[str]] = []
    seen: set[str] = set()
    previous: torch.Tensor | None = None
    for key, x in calls:
        if key in seen:
            continue
        if stages and x is previous:
            stages[-1].append(key)
        else:
            stages.append([key])
        seen.add(key)
        previous = x
    check_all_ran(modules, seen)
    return stages, len(calls) == len(modules)


def _layer_input(module: nn.Module, x: torch.Tensor,
                 token_mask: torch.Tensor | None) -> torch.Tensor:
    """One batch's input tokens of a layer as one (tokens, in) float64 matrix."""
    return torch.cat(list(layer_rows(module, x.detach(), token_mask)))


class PairedInputStats:
    """Input statistics of one stage's layers in a pruned block and its unpruned copy.

    Args:
        pruned: ``{weight key: module}`` in the block being pruned.
        dense: the same keys in the unpruned copy.
        stop_after: the key after whose input both passes may stop (None: run them whole).
    """

    def __init__(self, pruned: Mapping[str, nn.Module], dense: Mapping[str, nn.Module],
                 stop_after: str | None) -> None:
        self.xtx: dict[str, torch.Tensor] = {}
        self.cross: dict[str, torch.Tensor] = {}
        self.x_sum: dict[str, torch.Tensor] = {}
        self.dense_sum: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}
        self.token_mask: torch.Tensor | None = None
        self._stop_after = stop_after
        self._dense_rows: dict[str, list[torch.Tensor]] = {}
        self._handles = [m.register_forward_pre_hook(self._dense_hook(k)) for k, m in dense.items()]
        self._handles += [m.register_forward_pre_hook(self._pruned_hook(k))
                          for k, m in pruned.items()]

    def _dense_hook(self, key: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            rows = _layer_input(module, inputs[0], self.token_mask)  # (tokens, in)
            self._dense_rows.setdefault(key, []).append(rows)
            if key == self._stop_after:
                raise StopForward

        return hook

    def _pruned_hook(self, key: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            rows = _layer_input(module, inputs[0], self.token_mask)  # (tokens, in)
            queued = self._dense_rows.get(key)
            if not queued or queued[0].shape != rows.shape:
                raise CalibrationError(
                    f"{key} did not see the same tokens in the pruned block as in its "
                    "unpruned copy",
                    "use reconstruct='layer' for this model",
                )
            dense_rows = queued.pop(0)
            self._add(key, "xtx", rows.t() @ rows)
            self._add(key, "cross", rows.t() @ dense_rows)
            self._add(key, "x_sum", rows.sum(dim=0))
            self._add(key, "dense_sum", dense_rows.sum(dim=0))
            self.count[key] = self.count.get(key, 0) + rows.shape[0]
            if key == self._stop_after:
                raise StopForward

        return hook

    def _add(self, key: str, name: str, value: torch.Tensor) -> None:
        table: dict[str, torch.Tensor] = getattr(self, name)
        table[key] = table[key] + value if key in table else value

    def run(self, block: nn.Module, dense_block: nn.Module, inputs: list[BlockInput],
            dense_inputs: list[BlockInput]) -> None:
        """Run both blocks on every batch (the unpruned copy first); then detach the hooks."""
        try:
            for item, dense_item in zip(inputs, dense_inputs, strict=True):
                self.token_mask = item.token_mask
                for module, arguments in ((dense_block, dense_item), (block, item)):
                    with contextlib.suppress(StopForward):
                        module(*arguments.args, **arguments.kwargs)
                self._dense_rows.clear()
        finally:
            for handle in self._handles:
                handle.remove()

    def mean(self, key: str) -> torch.Tensor:
        """Mean pruned-model input of one layer over the real calibration tokens, (in,)."""
        return self.x_sum[key] / max(self.count[key], 1)

    def dense_mean(self, key: str) -> torch.Tensor:
        """Mean unpruned-model input of one layer over the same tokens, (in,)."""
        return self.dense_sum[key] / max(self.count[key], 1)
