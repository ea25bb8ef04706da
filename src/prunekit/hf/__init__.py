"""Hugging Face-aware structured pruning: attention heads, MLP neurons, whole blocks."""

from ..specs import TransformerStructured
from .arch import read_arch
from .prune import TransformerPipeline
from .rebuild import original_config_values, rebuild_transformer

__all__ = [
    "TransformerStructured",
    "TransformerPipeline",
    "read_arch",
    "rebuild_transformer",
    "original_config_values",
]
