"""Pruning models larger than memory: one block loaded at a time from the checkpoint."""

from .prune import SequentialResult, prune_pretrained
from .text import text_calibration

__all__ = ["prune_pretrained", "SequentialResult", "text_calibration"]
