"""One-shot pruning with calibration data: Wanda and SparseGPT (masked end state)."""

from .prune import prune_oneshot

__all__ = ["prune_oneshot"]
