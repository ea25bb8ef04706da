"""The sparse-stored end state: compact formats, sparse Linear and Conv2d layers, per-layer
dispatch."""

from .conv import CSRConv2d, to_conv
from .conv_choice import choose_conv_kernel
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
    "CSRConv2d",
    "choose_conv_kernel",
    "to_conv",
    "SemiStructuredLinear",
    "dense_weight",
    "to_linear",
    "SparseConversion",
    "SparseLayer",
    "to_sparse",
    "sparse_kernels",
]
