"""CPU (and CUDA) inference latency: warm-up, fixed threads, median and IQR.

Models compared against each other are timed *interleaved* (A, B, A, B, ...) in one call,
so a load spike from another process hits all of them alike and the speedup stays fair.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..inputs import ExampleInputs, call_model
from ..result import PruneResult, model_of
from .timing import elapsed_ms, median_iqr


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one model at one batch size, in milliseconds per forward pass."""

    median_ms: float
    iqr_ms: float
    min_ms: float
    samples: int
    batch: int
    threads: int
    device: str
    channels_last: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _timer(model: nn.Module, inputs: ExampleInputs, device: torch.device) -> Callable[[], float]:
    return lambda: elapsed_ms(lambda: call_model(model, inputs), device)


def prepare_for_inference(
    model: nn.Module, channels_last: bool, device: torch.device
) -> nn.Module:
    """An eval-mode copy on ``device``, optionally in channels_last memory format."""
    work = copy.deepcopy(model).eval().to(device)
    if channels_last:
        work = work.to(memory_format=torch.channels_last)
    return work


def _move_inputs(inputs: torch.Tensor, channels_last: bool, device: torch.device) -> torch.Tensor:
    x = inputs.to(device)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def time_models(
    models: Mapping[str, nn.Module | PruneResult],
    inputs: torch.Tensor,
    *,
    threads: int = 1,
    warmup: int = 5,
    rounds: int = 20,
    calls_per_round: int = 3,
    channels_last: bool | Mapping[str, bool] = False,
    device: str | torch.device = "cpu",
) -> dict[str, LatencyStats]:
    """Time several models on the same inputs, interleaved round by round.

    Args:
        models: name -> model or pruning result (not modified; each is copied into eval
            mode).
        inputs: one input batch (its first dim is the batch size).
        threads: torch intra-op threads during timing.
        warmup: untimed calls per model first.
        rounds: rounds; each round times ``calls_per_round`` calls of every model.
        calls_per_round: timed calls per model per round.
        channels_last: convert models and 4-d inputs to channels_last (one flag for all,
            or name -> flag).
        device: ``"cpu"`` or a CUDA device.

    Returns:
        name -> :class:`LatencyStats` (median and IQR over all timed calls).
    """
    modules = {name: model_of(m, name) for name, m in models.items()}
    dev = torch.device(device)
    formats = {
        name: channels_last if isinstance(channels_last, bool) else channels_last.get(name, False)
        for name in modules
    }
    samples: dict[str, list[float]] = {name: [] for name in modules}
    with fixed_threads(threads), torch.inference_mode():
        timers = {
            name: _timer(prepare_for_inference(m, formats[name], dev),
                         _move_inputs(inputs, formats[name], dev), dev)
            for name, m in modules.items()
        }
        for run in timers.values():
            for _ in range(warmup):
                run()
        for _ in range(rounds):
            for name, run in timers.items():
                samples[name].extend(run() for _ in range(calls_per_round))
    return {
        name: LatencyStats(*median_iqr(v), min(v), len(v), int(inputs.shape[0]), threads,
                           str(dev), formats[name])
        for name, v in samples.items()
    }


def pick_memory_format(
    model: nn.Module, inputs: torch.Tensor, *, threads: int = 1, device: str = "cpu"
) -> bool:
    """True when channels_last is faster than contiguous for ``model`` on ``inputs``.

    Only 4-d (image) inputs are considered; anything else returns False.
    """
    if inputs.ndim != 4:
        return False
    contiguous = time_models({"m": model}, inputs, threads=threads, warmup=2, rounds=5,
                             calls_per_round=1, device=device)["m"]
    cl = time_models({"m": model}, inputs, threads=threads, warmup=2, rounds=5,
                     calls_per_round=1, channels_last=True, device=device)["m"]
    return cl.median_ms < contiguous.median_ms
