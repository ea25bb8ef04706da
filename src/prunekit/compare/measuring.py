"""Measure one deployable model against the dense one: size, compute, memory, latency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..measure.counting import count_macs, count_nonzero_params, count_params
from ..measure.latency import pick_memory_format, time_models
from ..measure.memory import peak_inference_memory

BATCHES = (1, 64)


@dataclass
class MeasureContext:
    """Inputs and settings shared by every measurement of one run."""

    dense: nn.Module  # deployable dense model
    inputs: dict[int, torch.Tensor]  # batch size -> input batch
    threads: int
    rounds: int
    dense_channels_last: dict[int, bool]

    @classmethod
    def create(cls, dense: nn.Module, inputs: dict[int, torch.Tensor], threads: int,
               rounds: int) -> MeasureContext:
        formats = {b: pick_memory_format(dense, x, threads=threads) for b, x in inputs.items()}
        return cls(dense, inputs, threads, rounds, formats)


def count_row(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Total and nonzero parameters and effective MACs (what dense kernels compute) per sample."""
    return {
        "params": count_params(model),
        "nonzero_params": count_nonzero_params(model),
        "macs": count_macs(model, example[:1]),
    }


def latency_row(model: nn.Module, ctx: MeasureContext, device: str = "cpu") -> dict[str, Any]:
    """Latency at each batch size, timed interleaved with the dense model; speedup = dense/it."""
    row: dict[str, Any] = {}
    for batch, x in ctx.inputs.items():
        cl = pick_memory_format(model, x, threads=ctx.threads, device=device) if device == "cpu" \
            else False
        dense_cl = ctx.dense_channels_last[batch] if device == "cpu" else False
        models = {"dense": ctx.dense}
        if model is not ctx.dense:
            models["model"] = model
        calls = 10 if batch == 1 else 2  # small batches are quick: more calls per round
        stats = time_models(models, x, threads=ctx.threads, rounds=ctx.rounds,
                            calls_per_round=calls, channels_last={"dense": dense_cl, "model": cl},
                            device=device)
        mine, dense = stats.get("model", stats["dense"]), stats["dense"]
        row[f"b{batch}"] = {
            "median_ms": mine.median_ms, "iqr_ms": mine.iqr_ms,
            "dense_median_ms": dense.median_ms, "dense_iqr_ms": dense.iqr_ms,
            "speedup": dense.median_ms / mine.median_ms, "channels_last": cl,
            "samples": mine.samples, "min_ms": mine.min_ms, "dense_min_ms": dense.min_ms,
            "speedup_of_minimums": dense.min_ms / mine.min_ms,
        }
    return row


def measure_model(model: nn.Module, ctx: MeasureContext) -> dict[str, Any]:
    """Counts, peak memory at the largest batch, CPU latency (and CUDA latency if present)."""
    largest = max(ctx.inputs)
    row: dict[str, Any] = count_row(model, ctx.inputs[min(ctx.inputs)])
    memory = peak_inference_memory(model, ctx.inputs[largest],
                                   channels_last=ctx.dense_channels_last[largest])
    row["memory"] = {**memory, "batch": largest}
    row["latency_cpu"] = latency_row(model, ctx)
    row["threads"] = ctx.threads
    if torch.cuda.is_available():
        row["latency_cuda"] = latency_row(model, ctx, device="cuda")
    return row
