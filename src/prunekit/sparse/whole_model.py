"""The whole-model check after sparse convolutions were chosen layer by layer.

Each convolution is timed against a dense one on a contiguous (NCHW) input, the layout
:class:`~.conv.CSRConv2d` takes and returns. A dense CNN on the CPU is often faster still in
channels_last, and what sits between the convolutions (BatchNorm, activations, adds) costs
differently in each layout; so layers that each won can add up to a model slower than the
dense one in its best layout. This check times the converted model against the same model
with those convolutions dense, interleaved, and says when the converted one lost.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..inputs import ExampleInputs, call_model
from ..measure.latency import pick_memory_format
from .dispatch import cautious_speedup, time_pair


@dataclass(frozen=True)
class WholeModelTiming:
    """The converted model against the dense one in its faster memory format."""

    speedup: float  # dense / converted, the lower of the median and 75th-percentile ratios
    dense_format: str  # "channels_last" or "contiguous"

    @property
    def slower(self) -> bool:
        """True when the converted model did not beat dense."""
        return self.speedup < 1.0

    def describe(self) -> str:
        """One line for the summary of every reverted layer."""
        return (f"the converted model ran {self.speedup:.2f}x the speed of the dense model "
                f"({self.dense_format}), so its convolutions stay dense")


def image_input(example_inputs: ExampleInputs | None) -> torch.Tensor | None:
    """The example input if it is one 4-D tensor (the only case with a layout choice)."""
    if isinstance(example_inputs, torch.Tensor) and example_inputs.dim() == 4:
        return example_inputs
    return None


def time_whole_models(dense: nn.Module, converted: nn.Module,
                      x: torch.Tensor) -> WholeModelTiming:
    """Time ``converted`` on ``x`` against ``dense`` in its faster memory format.

    Args:
        dense: the finalized dense model (not modified: a channels_last copy is timed).
        converted: the model with sparse layers, run on ``x`` as given.
        x: a 4-D example batch.

    Returns:
        The speed-up and the format the dense model was timed in.
    """
    threads = torch.get_num_threads()
    channels_last = pick_memory_format(dense, x, threads=threads, device=str(x.device))
    reference, reference_x = dense, x
    if channels_last:
        reference = copy.deepcopy(dense).to(memory_format=torch.channels_last)
        reference_x = x.contiguous(memory_format=torch.channels_last)
    times = time_pair(lambda: call_model(reference, reference_x),
                      lambda: call_model(converted, x), x.device)
    return WholeModelTiming(cautious_speedup(*times),
                            "channels_last" if channels_last else "contiguous")
