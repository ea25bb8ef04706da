"""Timing for latency budgets: the device check, batched inputs, and dense-vs-pruned timing.

The dense and the pruned model are timed interleaved (dense, pruned, pruned, dense, ...)
in one process, so a load spike from another process hits both alike; each reports the
median over the rounds.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SpecError
from ..inputs import ExampleInputs, call_model, flat_tensors
from ..measure.latency import fixed_threads
from ..measure.timing import elapsed_ms
from .targets import Latency


def check_device(target: Latency) -> None:
    """Refuse a device (or dtype there) this process cannot time on.

    Raises:
        SpecError: naming the device and what is missing.
    """
    device = torch.device(target.device)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise SpecError(
                f"Latency device {target.device!r} is not available here "
                f"({count} CUDA device(s) visible)",
                'time on a device this machine has, e.g. device="cpu"',
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise SpecError(f"Latency device {target.device!r} is not available here",
                            'use device="cpu"')
    elif device.type != "cpu":
        raise SpecError(f"cannot time layers on device {target.device!r}",
                        'use device="cpu" or a CUDA device')
    try:
        probe = nn.Conv2d(2, 2, 1).to(device=device, dtype=target.dtype)
        with torch.inference_mode():
            probe(torch.ones(1, 2, 2, 2, device=device, dtype=target.dtype))
    except Exception as exc:  # noqa: BLE001 - any failure means the table cannot be measured
        raise SpecError(
            f"cannot run {target.dtype_name} layers on {target.device!r}: "
            f"{type(exc).__name__}: {exc}",
            "choose another dtype or device for the Latency target",
        ) from exc


def batch_size(example_inputs: ExampleInputs) -> int:
    """The first dim of the first tensor in the inputs (1 if there is none)."""
    tensors = [t for t in flat_tensors(example_inputs) if t.dim() > 0]
    return int(tensors[0].shape[0]) if tensors else 1


def batched(example_inputs: ExampleInputs, batch: int, device: torch.device,
            dtype: torch.dtype) -> Any:
    """The example inputs repeated along their batch dim to ``batch`` rows, on ``device``;
    floating tensors in ``dtype``."""
    rows = batch_size(example_inputs)

    def convert(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.dim() > 0 and value.shape[0] == rows:
                value = value[torch.arange(batch, device=value.device) % rows]
            value = value.to(device)
            return value.to(dtype) if value.is_floating_point() else value
        if isinstance(value, Mapping):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return type(value)(convert(v) for v in value)
        return value

    return convert(example_inputs)


def timing_copy(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """An eval-mode copy of ``model`` on ``device`` in ``dtype`` (the model is not changed)."""
    return copy.deepcopy(model).eval().to(device=device, dtype=dtype)


def _timer(model: nn.Module, inputs: Any, device: torch.device) -> Callable[[], float]:
    return lambda: elapsed_ms(lambda: call_model(model, inputs), device)


@dataclass(frozen=True)
class PairTiming:
    """Dense and pruned latency, ms per forward pass (medians over interleaved rounds)."""

    dense_ms: float
    pruned_ms: float
    rounds: int

    @property
    def ratio(self) -> float:
        """Pruned over dense."""
        return self.pruned_ms / self.dense_ms if self.dense_ms > 0 else 1.0


def time_pair(dense: nn.Module, pruned: nn.Module, inputs: Any, target: Latency) -> PairTiming:
    """Time ``dense`` and ``pruned`` (already on the device, in the dtype) interleaved.

    One untimed call each, then ``target.rounds`` rounds; the order alternates by round.
    """
    device = torch.device(target.device)
    threads = target.threads or torch.get_num_threads()
    samples: dict[str, list[float]] = {"dense": [], "pruned": []}
    with fixed_threads(threads), torch.inference_mode():
        timers = {"dense": _timer(dense, inputs, device), "pruned": _timer(pruned, inputs, device)}
        for run in timers.values():
            run()
        for index in range(target.rounds):
            order = ("dense", "pruned") if index % 2 == 0 else ("pruned", "dense")
            for name in order:
                samples[name].append(timers[name]())
    return PairTiming(statistics.median(samples["dense"]), statistics.median(samples["pruned"]),
                      target.rounds)
