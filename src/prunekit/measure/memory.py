"""Peak inference memory: weights plus the allocator's peak during one forward pass.

On CUDA the caching allocator's own peak counter is used. On CPU the torch profiler
records every allocation (by the leaf op that made it) and every free; replaying them in
time order gives the peak of memory allocated during the forward pass.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from collections.abc import Iterator

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from ..inputs import ExampleInputs, call_model
from ..result import PruneResult, model_of


def tensor_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer of ``model``."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: the profiler's C++ side logs start/stop lines
    (and, on CUDA builds without a GPU, a device-count error) straight to it."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cpu_activation_peak(model: nn.Module, inputs: ExampleInputs) -> int:
    with _native_stderr_silenced(), torch.inference_mode(), profile(
        activities=[ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        call_model(model, inputs)
    # frees are "[memory]" events; an allocation is charged to the leaf op that made it
    events = [
        (e.time_range.start, int(e.cpu_memory_usage))
        for e in prof.events()
        if e.name == "[memory]" or (not e.cpu_children and e.cpu_memory_usage > 0)
    ]
    current = peak = 0
    for _, delta in sorted(events):
        current += delta
        peak = max(peak, current)
    return peak


def _cuda_activation_peak(model: nn.Module, inputs: ExampleInputs, device: torch.device) -> int:
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        call_model(model, inputs)
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def peak_inference_memory(
    model: nn.Module | PruneResult, inputs: torch.Tensor, *, channels_last: bool = False,
    device: str = "cpu",
) -> dict[str, int]:
    """Measure weights + peak activation memory of one forward pass on ``inputs``.

    Args:
        model: the model (copied; not modified).
        inputs: one input batch.
        channels_last: measure in channels_last memory format.
        device: ``"cpu"`` or a CUDA device.

    Returns:
        ``{"weights_bytes", "activations_bytes", "peak_bytes"}`` (peak = weights + activations).
    """
    model = model_of(model, "model")
    dev = torch.device(device)
    work = copy.deepcopy(model).eval().to(dev)
    x = inputs.to(dev)
    if channels_last and x.ndim == 4:
        work = work.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        call_model(work, x)  # warm-up: one-off allocations (workspaces) are not the model's
    if dev.type == "cuda":
        activations = _cuda_activation_peak(work, x, dev)
    else:
        activations = _cpu_activation_peak(work, x)
    weights = tensor_bytes(work)
    return {"weights_bytes": weights, "activations_bytes": activations,
            "peak_bytes": weights + activations}
