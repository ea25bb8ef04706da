"""Hugging Face-aware structured pruning: attention heads, MLP neurons, whole blocks."""

from .arch import read_arch
from .prune import prune_transformer
from .spec import TransformerStructured

__all__ = ["TransformerStructured", "prune_transformer", "read_arch"]
