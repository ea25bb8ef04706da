"""After a change: the model must still run on the example inputs, with the same output shapes."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import BUG_HINT, PruningBrokeModelError
from ..inputs import ExampleInputs, model_outputs


def check_still_runs(
    work: nn.Module, example_inputs: ExampleInputs, before: list[torch.Tensor], what: str
) -> list[torch.Tensor]:
    """Run ``work`` on ``example_inputs``; compare output count and shapes with ``before``.

    Returns:
        The outputs after the change.

    Raises:
        PruningBrokeModelError: the forward pass fails, or the outputs changed shape.
    """
    try:
        after = model_outputs(work, example_inputs)
    except Exception as exc:  # noqa: BLE001 - the model ran before the change: ours to own
        raise PruningBrokeModelError(
            f"{what} broke the model: it ran on the example inputs before and fails after: "
            f"{type(exc).__name__}: {exc}",
            f"{BUG_HINT}; the model was left unchanged",
        ) from exc
    shapes_before = [tuple(t.shape) for t in before]
    shapes_after = [tuple(t.shape) for t in after]
    if shapes_before != shapes_after:
        raise PruningBrokeModelError(
            f"{what} changed the model's output shapes: {shapes_before} -> {shapes_after}",
            f"{BUG_HINT}; the model was left unchanged",
        )
    return after
