"""One-shot pruning with calibration data: Wanda and SparseGPT (masked end state)."""

from .prune import OneShotPipeline

__all__ = ["OneShotPipeline"]
