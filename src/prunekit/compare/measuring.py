"""Measure one deployable model against the dense one: size, compute, memory, latency.

A model with zeros inside its layers (unstructured, N:M, combined variants) has its CPU
latency timed after :func:`prunekit.to_sparse` converted it at each batch size; counts,
memory, CUDA latency and everything else are measured on the deployable model itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..measure.counting import count_macs, count_nonzero_params, count_params
from ..measure.latency import fixed_threads, pick_memory_format, time_models
from ..measure.memory import peak_inference_memory
from ..sparse import CSRConv2d
from .pipeline import TIMED_DEPLOYABLE, TIMED_SPARSE, has_sparse_weights, sparse_deployable

BATCHES = (1, 64)


@dataclass
class MeasureContext:
    """Inputs and settings shared by every measurement of one run."""

    dense: nn.Module  # deployable dense model
    inputs: dict[int, torch.Tensor]  # batch size -> input batch
    threads: int
    rounds: int
    dense_channels_last: dict[int, bool]
    warmup: int = 5  # untimed calls of each model before timing

    @classmethod
    def create(cls, dense: nn.Module, inputs: dict[int, torch.Tensor], threads: int,
               rounds: int, warmup: int = 5) -> MeasureContext:
        """Pick the dense model's faster memory format per batch size; keep the rest."""
        formats = {b: pick_memory_format(dense, x, threads=threads) for b, x in inputs.items()}
        return cls(dense, inputs, threads, rounds, formats, warmup)


def count_row(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Total and nonzero parameters and effective MACs (what dense kernels compute) per sample."""
    return {
        "params": count_params(model),
        "nonzero_params": count_nonzero_params(model),
        "macs": count_macs(model, example[:1]),
    }


def runs_nchw(model: nn.Module) -> bool:
    """True if ``model`` has a :class:`CSRConv2d`: it takes and returns NCHW tensors, so
    channels_last inputs would only add a layout copy at every sparse convolution."""
    return any(isinstance(m, CSRConv2d) for m in model.modules())


def _channels_last(model: nn.Module, x: torch.Tensor, ctx: MeasureContext, device: str) -> bool:
    if device != "cpu" or runs_nchw(model):
        return False
    return pick_memory_format(model, x, threads=ctx.threads, device=device)


def latency_row(model: nn.Module, ctx: MeasureContext, device: str = "cpu",
                converted: Mapping[int, nn.Module] | None = None) -> dict[str, Any]:
    """Latency at each batch size, timed interleaved with the dense model; speedup = dense/it.

    Args:
        model: the deployable model.
        ctx: the run's measurement context.
        device: ``"cpu"`` or ``"cuda"``.
        converted: batch size -> the model to time instead of ``model`` on the CPU at that
            batch size (its :func:`prunekit.to_sparse` conversion).

    Returns:
        ``{"b1": {...}, "b64": {...}}`` (a key per batch size of ``ctx``): median, IQR and
        minimum of both models, the speedups, the memory format and which model was timed
        (``timed``).
    """
    row: dict[str, Any] = {}
    for batch, x in ctx.inputs.items():
        sparse = (converted or {}).get(batch) if device == "cpu" else None
        timed = model if sparse is None else sparse
        cl = _channels_last(timed, x, ctx, device)
        dense_cl = ctx.dense_channels_last[batch] if device == "cpu" else False
        models = {"dense": ctx.dense}
        if timed is not ctx.dense:
            models["model"] = timed
        calls = 10 if batch == 1 else 2  # small batches are quick: more calls per round
        stats = time_models(models, x, threads=ctx.threads, warmup=ctx.warmup,
                            rounds=ctx.rounds, calls_per_round=calls,
                            channels_last={"dense": dense_cl, "model": cl}, device=device)
        mine, dense = stats.get("model", stats["dense"]), stats["dense"]
        row[f"b{batch}"] = {
            "median_ms": mine.median_ms, "iqr_ms": mine.iqr_ms,
            "dense_median_ms": dense.median_ms, "dense_iqr_ms": dense.iqr_ms,
            "speedup": dense.median_ms / mine.median_ms, "channels_last": cl,
            "samples": mine.samples, "min_ms": mine.min_ms, "dense_min_ms": dense.min_ms,
            "speedup_of_minimums": dense.min_ms / mine.min_ms,
            "timed": TIMED_DEPLOYABLE if sparse is None else TIMED_SPARSE,
        }
    return row


def sparse_models(model: nn.Module, ctx: MeasureContext) -> tuple[dict[int, nn.Module],
                                                                 dict[str, Any]]:
    """``model`` through :func:`prunekit.to_sparse` at each batch size of ``ctx``.

    Args:
        model: a deployable model with zeros inside its layers.
        ctx: the run's measurement context (inputs and threads).

    Returns:
        ``(converted, records)``: batch size -> the converted model, for the batch sizes
        where one should be timed; ``"b1"`` / ``"b64"`` -> what the conversion did
        (:func:`prunekit.compare.pipeline.sparse_deployable`).
    """
    converted: dict[int, nn.Module] = {}
    records: dict[str, Any] = {}
    with fixed_threads(ctx.threads):  # the layer timings run at the run's thread count
        for batch, x in ctx.inputs.items():
            sparse, records[f"b{batch}"] = sparse_deployable(model, x)
            if sparse is not None:
                converted[batch] = sparse
    return converted, records


def measure_model(model: nn.Module, ctx: MeasureContext) -> dict[str, Any]:
    """Counts, peak memory at the largest batch, CPU latency (and CUDA latency if present).

    A model with zeros inside its layers gets ``sparse`` (per batch size, what
    :func:`prunekit.to_sparse` did) and its CPU latency is that of the converted model
    wherever a layer went sparse.
    """
    largest = max(ctx.inputs)
    row: dict[str, Any] = count_row(model, ctx.inputs[min(ctx.inputs)])
    memory = peak_inference_memory(model, ctx.inputs[largest],
                                   channels_last=ctx.dense_channels_last[largest])
    row["memory"] = {**memory, "batch": largest}
    converted: dict[int, nn.Module] = {}
    if has_sparse_weights(model):
        converted, row["sparse"] = sparse_models(model, ctx)
    row["latency_cpu"] = latency_row(model, ctx, converted=converted)
    row["threads"] = ctx.threads
    if torch.cuda.is_available():
        row["latency_cuda"] = latency_row(model, ctx, device="cuda")
    return row
