"""Measuring models: accuracy, latency, peak memory (counting lives in ``counting``)."""

from .accuracy import evaluate_accuracy
from .latency import LatencyStats, fixed_threads, pick_memory_format, time_models
from .memory import peak_inference_memory, tensor_bytes

__all__ = [
    "evaluate_accuracy",
    "LatencyStats",
    "fixed_threads",
    "pick_memory_format",
    "time_models",
    "peak_inference_memory",
    "tensor_bytes",
]
