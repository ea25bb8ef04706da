"""The sparse-stored end state: compact formats, sparse Linear layers, per-layer dispatch."""

from .convert import SparseConversion, SparseLayer, sparse_kernels, to_sparse
from .decode import decode, decode_into, keep_mask
from .formats import FORMATS, Encoded, choose_format, encode
from .modules import CSRLinear, SemiStructuredLinear, dense_weight, to_linear

__all__ = [
    "FORMATS",
    "Encoded",
    "choose_format",
    "encode",
    "decode",
    "decode_into",
    "keep_mask",
    "CSRLinear",
    "SemiStructuredLinear",
    "dense_weight",
    "to_linear",
    "SparseConversion",
    "SparseLayer",
    "to_sparse",
    "sparse_kernels",
]
