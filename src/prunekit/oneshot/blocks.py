"""Find the repeated blocks (transformer layers) that calibration walks through one by one."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..apply.masks import original_class
from ..inputs import call_model
from ..targets import qualified_name
from .calibration import Batch, block_output

logger = logging.getLogger(__name__)


def _candidate_lists(model: nn.Module, target_names: list[str]) -> list[tuple[str, nn.ModuleList]]:
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        if len({original_class(child) for child in module}) != 1:  # masked or not alike
            continue
        prefix = f"{name}." if name else ""
        covered = sum(1 for t in target_names if t.startswith(prefix))
        if covered:
            found.append((name, module, covered))
    found.sort(key=lambda item: -item[2])
    return [(name, module) for name, module, _ in found]


def _first_example(batch: Batch) -> Batch:
    """The batch cut to its first example (a cheap probe), where it is clearly batched."""
    if isinstance(batch, torch.Tensor):
        return batch[:1]
    if isinstance(batch, Mapping):
        tensors = [v for v in batch.values() if isinstance(v, torch.Tensor)]
        if tensors and len({t.shape[0] for t in tensors if t.dim()}) == 1:
            return {k: v[:1] if isinstance(v, torch.Tensor) and v.dim() else v
                    for k, v in batch.items()}
    return batch


def _feeds_sequentially(model: nn.Module, blocks: nn.ModuleList, batch: Batch) -> bool:
    """True if, on ``batch``, each block's first input is the previous block's output."""
    seen: list[tuple[torch.Tensor | None, torch.Tensor]] = []

    def pre(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        first = args[0] if args else kwargs.get("hidden_states")
        seen.append((first if isinstance(first, torch.Tensor) else None, torch.empty(0)))

    def post(_: nn.Module, __: Any, out: Any) -> None:
        seen[-1] = (seen[-1][0], block_output(out))

    handles = [b.register_forward_pre_hook(pre, with_kwargs=True) for b in blocks]
    handles += [b.register_forward_hook(post) for b in blocks]
    try:
        with torch.no_grad():
            call_model(model, _first_example(batch))
    except Exception:  # noqa: BLE001 - reported later by the calibration pass itself
        return False
    finally:
        for handle in handles:
            handle.remove()
    if len(seen) != len(blocks):
        return False
    return all(
        nxt[0] is not None and nxt[0].shape == prev[1].shape and torch.equal(nxt[0], prev[1])
        for prev, nxt in zip(seen, seen[1:], strict=False)
    )


def find_blocks(
    model: nn.Module, target_names: list[str], batch: Batch
) -> list[tuple[str, nn.Module]]:
    """The model's sequential blocks as ``[(name, block), ...]``, or ``[]`` if none.

    A block list is an ``nn.ModuleList`` of same-typed modules holding targeted layers, run
    one after another (checked on ``batch``). Without one, calibration runs the whole model
    as a single stage.
    """
    for name, blocks in _candidate_lists(model, target_names):
        if _feeds_sequentially(model, blocks, batch):
            return [(qualified_name(name, str(i)), b) for i, b in enumerate(blocks)]
        logger.info("%s is not run block after block; calibrating the whole model at once", name)
    return []
