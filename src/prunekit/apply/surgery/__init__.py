"""Physical surgery: slicing parameters and buffers, one small handler per layer type."""

from .rebuild import rebuild_pruned_architecture

__all__ = ["rebuild_pruned_architecture"]
