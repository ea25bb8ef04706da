"""``nn.Conv2d`` as a matrix for one-shot pruning: weight columns and unfolded input tokens.

A convolution is a matrix product over unfolded inputs: each output position is one token
whose features are the input patch the kernel covers. Wanda and SparseGPT prune a
(out, in_channels * kh * kw) weight matrix against the statistics of those tokens.

Columns are ordered kernel position first, input channel fastest (``(kh, kw, C)``): a run
of consecutive columns is consecutive input channels at one kernel position, which is
where prunekit's N:M groups lie for convolutions (see :func:`prunekit.select.nm.nm_mask`),
so N:M along the matrix's columns is N:M along the weight's input channels.

Only plain convolutions are covered: ``groups=1``, zero padding, and a padding that is
the same on both sides. Anything else is left dense with the reason (:func:`skip_reason`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

CHUNK_ELEMENTS = 1 << 22  # unfolded values per chunk (32 MiB in float64)


def _padding(conv: nn.Conv2d) -> tuple[int, int] | None:
    """The conv's zero padding per side as integers, or None if a side is asymmetric."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0)
        totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
        if any(t % 2 for t in totals):
            return None
        return (totals[0] // 2, totals[1] // 2)
    return (int(conv.padding[0]), int(conv.padding[1]))


def skip_reason(conv: nn.Conv2d) -> str | None:
    """Why ``conv`` cannot be pruned as one matrix by Wanda / SparseGPT, or None if it can."""
    if conv.groups != 1:
        if conv.groups == conv.in_channels:
            return ("depthwise convolution: each filter sees one input channel, "
                    "data-aware pruning covers groups=1 only")
        return "grouped convolution: data-aware pruning covers groups=1 only"
    if conv.padding_mode != "zeros":
        return (f"padding_mode={conv.padding_mode!r}: data-aware pruning covers zero "
                "padding only")
    if _padding(conv) is None:
        return "padding='same' with an even kernel pads unevenly: not covered"
    return None


def conv_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A (out, C, kh, kw) weight as the (out, kh * kw * C) matrix (channel fastest)."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def conv_storage(matrix: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Undo :func:`conv_matrix`: a (out, kh * kw * C) matrix as a ``shape`` weight."""
    out, channels, kh, kw = shape
    return matrix.reshape(out, kh, kw, channels).permute(0, 3, 1, 2).contiguous()


def _unfolded(conv: nn.Conv2d, x: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """Tokens of a (n, C, H, W) input as (n * positions, kh * kw * C), channel fastest."""
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=padding,
                    stride=conv.stride)  # (n, C * kh * kw, positions)
    n, _, positions = cols.shape
    cols = cols.reshape(n, conv.in_channels, -1, positions)  # (n, C, kh * kw, positions)
    return cols.permute(0, 3, 2, 1).reshape(n * positions, -1)


def conv_rows(conv: nn.Conv2d, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """The conv's input tokens, a few images at a time (one chunk in memory at once).

    Args:
        conv: a convolution :func:`skip_reason` accepts.
        x: its input, (n, C, H, W) or (C, H, W).

    Yields:
        Chunks of tokens, (tokens, kh * kw * C), in ``x``'s dtype.
    """
    padding = _padding(conv)
    assert padding is not None, "skip_reason() refuses uneven padding"
    if x.dim() == 3:
        x = x.unsqueeze(0)
    first = _unfolded(conv, x[:1], padding)
    per_image = max(first.numel(), 1)
    step = max(1, CHUNK_ELEMENTS // per_image)
    yield first
    for start in range(1, x.shape[0], step):
        yield _unfolded(conv, x[start:start + step], padding)
