"""Importance scores: how much each weight (or channel) matters. Higher = keep."""

from .weight import weight_scores

__all__ = ["weight_scores"]
