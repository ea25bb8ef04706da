"""Compiled CPU kernels (numba, optional) for 2-D convolutions with a CSR weight.

**Layout.** The input is copied once per call into a zero-padded buffer of shape
``(batch blocks, C, row phases, col phases, Hq, Wq, B)``: ``B`` samples interleaved
innermost (``B = 1`` is plain padded NCHW), and for a stride ``s > 1`` the padded image
split into its phases (rows ``s * i + p``; only the phases some tap reads), so that every
kernel tap reads a *contiguous* run of the buffer: output ``(oh, ow)`` of tap ``(kh, kw)``
reads phase ``((kh d) % s, (kw d) % s)`` at ``(oh + (kh d) // s, ow + (kw d) // s)``. The
output of one sample block is then one vector over ``(oh, ow', b)`` with ``ow' < Wq`` (the
columns ``ow' >= Wo`` are computed and dropped), and each kept weight adds ``w * x[shift:]``,
one contiguous vector at a fixed shift, to it: no patches are materialised (``F.unfold``
alone costs more than the dense convolution). A stride-1 unpadded 1x1 convolution with one
sample a block reads its input where it is (a sparse GEMM over each sample's (C, H*W)).

**Kernel.** Like the Linear kernel of :mod:`.kernels`: per output channel (a CSR row over
``in_channels / groups * kh * kw``, padded with zero weights to a multiple of four), eight
kept weights (then four) per pass over an accumulator of at most :data:`CHUNK` floats,
written straight into the NCHW output (spill columns dropped, samples de-interleaved).
Tasks (sample block x row chunk x output-channel block) are split across threads. The
offsets and packed values depend on the weight and the input shape only: :func:`plan`
builds them once, :func:`run` reuses them.

**Block size** (:func:`block_size`): the fewest samples (power of two, at most
:data:`MAX_BLOCK`) whose output vector reaches :data:`MIN_VECTOR` floats: 1 at 28x28 and
above (the layout copy is then a padded row copy), 4 at 14x14, 8 at 7x7. Measured at batch
64 (one thread, CPU time, 95%): B=1 is best at 28x28 and 56x56, B=4 at 14x14, B=8 at 7x7
(B=1 there is about half as fast: 63-float vectors); B=16 and B=64 (the whole batch
innermost) are slower everywhere; the accumulator size (1-8K floats) made no measurable
difference, nor did 64-byte alignment of the buffer.

**Implementation choice.** A gcc-built AVX2 variant (intrinsics, a 64-float register tile
of the output per task, all output channels per tile) measured 0.3-1.1x this numba kernel
on the same layout and operands, so numba it is.

bf16 inputs are widened to float32 in the layout copy (a bit shift, exact), computed in
float32 and rounded once at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from . import kernels
from .kernels import _compiled, _threads

DTYPES = (torch.float32, torch.bfloat16)
CHUNK = 4096  # output floats one task accumulates at once (whole rows; at least one row)
MIN_VECTOR = 512  # shortest output vector per sample block worth computing alone
MAX_BLOCK = 8  # most samples interleaved in the layout copy
MIN_POINTWISE_VECTOR = 128  # a pointwise conv with this long a vector per sample skips the copy
TASKS_PER_THREAD = 4  # output channels are split until each thread has this many tasks

if kernels.numba is not None:
    from numba import prange

    @_compiled(fastmath=True)
    def _prepare(  # pragma: no cover - jit
        x: np.ndarray,
        out: np.ndarray,
        shape: np.ndarray,
        layout: np.ndarray,
        shift: int,
        pad_top: int,
        pad_left: int,
        stride_h: int,
        stride_w: int,
        phase_rows: np.ndarray,
        phase_cols: np.ndarray,
    ) -> None:
        """``x`` (flat N, C, H, W; raw bits: uint32, or uint16 bf16 shifted up by
        ``shift``) into ``out`` (flat blocks, C, row phases, col phases, Hq, Wq, B), zeros
        around. ``shape`` is (N, C, H, W), ``layout`` (blocks, row phases, col phases, Hq,
        Wq, B)."""
        n_samples, channels, height, width = shape[0], shape[1], shape[2], shape[3]
        blocks, row_phases, col_phases = layout[0], layout[1], layout[2]
        hq_size, wq_size, block = layout[3], layout[4], layout[5]
        row_len = wq_size * block
        plane_len = hq_size * row_len
        sample_len = channels * height * width
        for task in prange(blocks * channels):
            blk, c = task // channels, task % channels
            first = blk * block
            count = min(block, n_samples - first)
            for pc in range(col_phases):
                # the phase's columns wq that read inside the image: iw = s wq + start
                start = phase_cols[pc] - pad_left
                lo = min(wq_size, max(0, (-start + stride_w - 1) // stride_w))
                hi = max(lo, min(wq_size, (width - 1 - start) // stride_w + 1))
                for pr in range(row_phases):
                    plane = ((task * row_phases + pr) * col_phases + pc) * plane_len
                    for hq in range(hq_size):
                        ih = stride_h * hq + phase_rows[pr] - pad_top
                        row = plane + hq * row_len
                        if ih < 0 or ih >= height:
                            out[row : row + row_len] = 0
                            continue
                        out[row : row + lo * block] = 0
                        out[row + hi * block : row + row_len] = 0
                        src0 = (first * channels + c) * height * width + ih * width + start
                        first_in = src0 + stride_w * lo
                        if block == 1 and stride_w == 1:  # a plain row copy
                            src = x[first_in : first_in + hi - lo]
                            dst = out[row + lo : row + hi]
                            for w in range(hi - lo):
                                dst[w] = np.uint32(src[w]) << shift
                            continue
                        last_in = src0 + stride_w * (hi - 1) + 1
                        for b in range(count):
                            src = x[first_in + b * sample_len : last_in + b * sample_len : stride_w]
                            dst = out[row + lo * block + b : row + hi * block : block]
                            for w in range(hi - lo):
                                dst[w] = np.uint32(src[w]) << shift
                        for b in range(count, block):
                            out[row + lo * block + b : row + hi * block : block] = 0

    @_compiled()
    def _operands(  # pragma: no cover - jit
        crow: np.ndarray,
        col: np.ndarray,
        values: np.ndarray,
        geometry: np.ndarray,
        tap_row_phase: np.ndarray,
        tap_row_shift: np.ndarray,
        tap_col_phase: np.ndarray,
        tap_col_shift: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per kept weight: its value (float32) and the start of the input run it reads,
        relative to its sample block; each row padded with zero weights to a multiple of
        four (a pass over the accumulator takes eight or four weights, never fewer).

        ``geometry`` is (out channels per group, in channels per group, kw, col phases,
        phases, Hq, row stride, B)."""
        group_out, group_in, kw = geometry[0], geometry[1], geometry[2]
        col_phases, phases, hq_size = geometry[3], geometry[4], geometry[5]
        row_stride, block = geometry[6], geometry[7]
        taps = tap_row_phase.size * kw
        rows = crow.size - 1
        start = np.empty(rows + 1, dtype=np.int64)
        start[0] = 0
        for o in range(rows):
            start[o + 1] = start[o] + (crow[o + 1] - crow[o] + 3) // 4 * 4
        off = np.zeros(start[rows], dtype=np.int64)
        packed = np.zeros(start[rows], dtype=np.float32)
        plane = hq_size * row_stride
        for o in prange(rows):
            group_base = (o // group_out) * group_in
            at = start[o]
            for k in range(crow[o], crow[o + 1]):
                c_local, tap = col[k] // taps, col[k] % taps
                kh, kwi = tap // kw, tap % kw
                phase = tap_row_phase[kh] * col_phases + tap_col_phase[kwi]
                off[at] = (
                    ((group_base + c_local) * phases + phase) * plane
                    + tap_row_shift[kh] * row_stride
                    + tap_col_shift[kwi] * block
                )
                packed[at] = values[k]
                at += 1
        return start, off, packed

    @_compiled(fastmath=True)
    def _conv_rows(  # pragma: no cover - jit
        crow: np.ndarray,
        off: np.ndarray,
        values: np.ndarray,
        bias: np.ndarray,
        xs: np.ndarray,
        y: np.ndarray,
        block_stride: int,
        wq_size: int,
        block: int,
        rows_per_chunk: int,
        out_block: int,
    ) -> None:
        n_samples, out_channels, out_h, out_w = y.shape
        row_stride = wq_size * block
        length = ((out_h - 1) * wq_size + out_w) * block  # the last row's spill is not read
        blocks = (n_samples + block - 1) // block
        chunks = (out_h + rows_per_chunk - 1) // rows_per_chunk
        out_blocks = (out_channels + out_block - 1) // out_block
        for task in prange(blocks * chunks * out_blocks):
            blk = task // (chunks * out_blocks)
            chunk = (task // out_blocks) % chunks
            ob = task % out_blocks
            r0 = chunk * rows_per_chunk
            r1 = min(out_h, r0 + rows_per_chunk)
            j0 = r0 * row_stride
            n = min(length, r1 * row_stride) - j0
            window = xs[blk * block_stride + j0 :]
            first = blk * block
            count = min(block, n_samples - first)
            acc = np.empty(n, dtype=np.float32)
            for o in range(ob * out_block, min(out_channels, (ob + 1) * out_block)):
                acc[:] = bias[o] if bias.size else 0
                k, end = crow[o], crow[o + 1]
                while k + 8 <= end:  # eight kept weights per pass over acc
                    v0, v1, v2, v3 = values[k], values[k + 1], values[k + 2], values[k + 3]
                    v4, v5, v6, v7 = values[k + 4], values[k + 5], values[k + 6], values[k + 7]
                    s0, s1, s2, s3 = off[k], off[k + 1], off[k + 2], off[k + 3]
                    s4, s5, s6, s7 = off[k + 4], off[k + 5], off[k + 6], off[k + 7]
                    x0, x1 = window[s0 : s0 + n], window[s1 : s1 + n]
                    x2, x3 = window[s2 : s2 + n], window[s3 : s3 + n]
                    x4, x5 = window[s4 : s4 + n], window[s5 : s5 + n]
                    x6, x7 = window[s6 : s6 + n], window[s7 : s7 + n]
                    for i in range(n):
                        acc[i] += (v0 * x0[i] + v1 * x1[i] + v2 * x2[i] + v3 * x3[i]) + (
                            v4 * x4[i] + v5 * x5[i] + v6 * x6[i] + v7 * x7[i]
                        )
                    k += 8
                if k < end:  # rows hold a multiple of four weights: four are left
                    v0, v1, v2, v3 = values[k], values[k + 1], values[k + 2], values[k + 3]
                    s0, s1, s2, s3 = off[k], off[k + 1], off[k + 2], off[k + 3]
                    x0, x1 = window[s0 : s0 + n], window[s1 : s1 + n]
                    x2, x3 = window[s2 : s2 + n], window[s3 : s3 + n]
                    for i in range(n):
                        acc[i] += (v0 * x0[i] + v1 * x1[i]) + (v2 * x2[i] + v3 * x3[i])
                for h in range(r0, r1):  # drop the spill columns, undo the interleaving
                    start = (h - r0) * row_stride
                    if block == 1:
                        y[first, o, h, :] = acc[start : start + out_w]
                    else:
                        for b in range(count):
                            target = y[first + b, o, h]
                            for w in range(out_w):
                                target[w] = acc[start + w * block + b]


@dataclass(frozen=True)
class ConvSpec:
    """The geometry of a 2-D convolution (what ``F.conv2d`` takes besides the tensors).

    ``padding`` is ``(top, bottom, left, right)``, zeros (``"same"`` resolved as torch
    resolves it).
    """

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        """Output height and width for an input of ``height x width``."""
        top, bottom, left, right = self.padding
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        return (
            (height + top + bottom - dh * (kh - 1) - 1) // sh + 1,
            (width + left + right - dw * (kw - 1) - 1) // sw + 1,
        )

    def is_pointwise(self) -> bool:
        """A 1x1 convolution with stride 1 and no padding: the input is its own layout."""
        return self.kernel_size == (1, 1) and self.stride == (1, 1) and not any(self.padding)


@dataclass(frozen=True)
class _Axis:
    """One spatial axis of the phase layout: which phases are stored, where each tap reads."""

    phases: tuple[int, ...]  # padded coordinate mod stride of each stored phase
    tap_phase: tuple[int, ...]  # per tap: index into phases
    tap_shift: tuple[int, ...]  # per tap: offset in the phase plane
    size: int  # positions of a phase plane along this axis

    @classmethod
    def of(cls, kernel: int, stride: int, dilation: int, out: int) -> _Axis:
        reach = [k * dilation for k in range(kernel)]
        phases = tuple(sorted({r % stride for r in reach}))
        return cls(
            phases,
            tuple(phases.index(r % stride) for r in reach),
            tuple(r // stride for r in reach),
            out + max(reach) // stride,
        )


def block_size(spec: ConvSpec, batch: int, height: int, width: int) -> int:
    """Samples to interleave for this input: the fewest (a power of two, at most the batch
    and :data:`MAX_BLOCK`) whose output vector reaches :data:`MIN_VECTOR` floats.

    A pointwise convolution (:meth:`ConvSpec.is_pointwise`) whose per-sample vector is at
    least :data:`MIN_POINTWISE_VECTOR` floats keeps one sample a block: its input is then
    used as it is, without the layout copy.
    """
    out_h, out_w = spec.out_size(height, width)
    cols = _Axis.of(spec.kernel_size[1], spec.stride[1], spec.dilation[1], out_w)
    per_sample = max(1, (out_h - 1) * cols.size + out_w)
    if spec.is_pointwise() and per_sample >= MIN_POINTWISE_VECTOR:
        return 1
    want = max(1, math.ceil(MIN_VECTOR / per_sample))
    block = 1 << (want - 1).bit_length()
    return max(1, min(block, MAX_BLOCK, 1 << max(0, batch - 1).bit_length()))


@dataclass(frozen=True)
class ConvPlan:
    """Everything a call needs besides the input itself, for one weight and one input
    shape: the layout (samples interleaved, phase planes) and the kernel's operands (each
    kept weight's value and input offset, rows padded to a multiple of four).

    Build it with :func:`plan` and reuse it while the weight and the input shape stay the
    same (:class:`.conv.CSRConv2d` keeps the last few).
    """

    spec: ConvSpec
    input_shape: tuple[int, int, int, int]
    block: int
    layout: np.ndarray  # (blocks, row phases, col phases, Hq, Wq, B)
    phase_rows: np.ndarray
    phase_cols: np.ndarray
    start: np.ndarray
    off: np.ndarray
    values: np.ndarray
    bias: np.ndarray

    # Derived values are cached: a call on a small input costs tens of microseconds, so
    # recomputing them (numpy scalar arithmetic) on every call is a measurable share.
    @cached_property
    def out_shape(self) -> tuple[int, int, int, int]:
        out_h, out_w = self.spec.out_size(self.input_shape[2], self.input_shape[3])
        return (self.input_shape[0], self.spec.out_channels, out_h, out_w)

    @cached_property
    def in_place(self) -> bool:
        """True if the input is its own layout (pointwise, one sample a block)."""
        return self.spec.is_pointwise() and self.block == 1

    @cached_property
    def row_stride(self) -> int:
        return int(self.layout[4] * self.layout[5])

    @cached_property
    def block_stride(self) -> int:
        layout, channels = self.layout, self.spec.in_channels
        return int(channels * layout[1] * layout[2] * layout[3] * self.row_stride)

    @cached_property
    def blocks(self) -> int:
        return int(self.layout[0])

    @cached_property
    def columns(self) -> int:
        """Positions of a phase row (``Wq``: the output width plus the spill columns)."""
        return int(self.layout[4])

    @cached_property
    def shape_array(self) -> np.ndarray:
        """The input shape as the layout copy takes it."""
        return np.array(self.input_shape, dtype=np.int64)

    @cached_property
    def rows_per_chunk(self) -> int:
        """Output rows one task accumulates (whole rows, about :data:`CHUNK` floats)."""
        return max(1, CHUNK // self.row_stride)

    def out_block(self, threads: int) -> int:
        """Output channels per task: split until each thread has enough tasks."""
        chunks = -(-self.out_shape[2] // self.rows_per_chunk)
        split = max(1, math.ceil(TASKS_PER_THREAD * threads / (self.blocks * chunks)))
        return max(1, math.ceil(self.spec.out_channels / split))


def plan(
    crow: torch.Tensor,
    col: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    spec: ConvSpec,
    input_shape: tuple[int, ...],
    block: int | None = None,
) -> ConvPlan:
    """The :class:`ConvPlan` of a CSR weight (int32 indices; rows: output channels,
    columns: ``in_channels / groups * kh * kw`` in the weight's memory order) for inputs of
    ``input_shape`` (N, C, H, W). Call only where :func:`usable` is True.

    Args:
        crow: CSR row pointers, ``out_channels + 1``.
        col: CSR column indices.
        values: CSR values.
        bias: ``out_channels`` values or None.
        spec: the convolution's geometry.
        input_shape: the input's shape, (N, C, H, W).
        block: samples interleaved in the layout copy (default: :func:`block_size`).

    Returns:
        The plan :func:`run` takes.
    """
    n_samples, _, height, width = input_shape
    out_h, out_w = spec.out_size(height, width)
    if block is None:
        block = block_size(spec, n_samples, height, width)
    rows = _Axis.of(spec.kernel_size[0], spec.stride[0], spec.dilation[0], out_h)
    cols = _Axis.of(spec.kernel_size[1], spec.stride[1], spec.dilation[1], out_w)
    layout = np.array(
        ((n_samples + block - 1) // block, len(rows.phases), len(cols.phases), rows.size,
         cols.size, block),
        dtype=np.int64,
    )
    geometry = (
        spec.out_channels // spec.groups,
        spec.in_channels // spec.groups,
        spec.kernel_size[1],
        len(cols.phases),
        len(rows.phases) * len(cols.phases),
        rows.size,
        cols.size * block,
        block,
    )
    with _threads():  # a parallel kernel: any such call may start numba's pool
        start, off, packed = _operands(
            crow.numpy(),
            col.numpy(),
            values.detach().float().numpy(),
            np.array(geometry, dtype=np.int64),
            np.array(rows.tap_phase, dtype=np.int64),
            np.array(rows.tap_shift, dtype=np.int64),
            np.array(cols.tap_phase, dtype=np.int64),
            np.array(cols.tap_shift, dtype=np.int64),
        )
    return ConvPlan(
        spec,
        (n_samples, spec.in_channels, height, width),
        block,
        layout,
        np.array(rows.phases, dtype=np.int64),
        np.array(cols.phases, dtype=np.int64),
        start,
        off,
        packed,
        np.empty(0, np.float32) if bias is None else bias.detach().float().numpy().copy(),
    )


def usable(x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """True if the compiled kernel should run: numba present, CPU, a supported dtype
    (float32, bfloat16) shared by input and weight, a 4-D input, and no gradient needed
    (the kernel has no backward).

    Args:
        x: the input, (N, C, H, W).
        values: the CSR values.
        bias: the layer's bias, or None.

    Returns:
        Whether the compiled kernel may compute the convolution.
    """
    return (
        kernels.numba is not None
        and x.dim() == 4
        and kernels.on_cpu_without_grad(x, values, bias, DTYPES)
    )


def _bits(t: torch.Tensor) -> np.ndarray:
    """The raw bits of a float32 (uint32) or bfloat16 (uint16) tensor, flat."""
    t = t.detach().contiguous()
    if t.dtype == torch.float32:  # numpy's view is a microsecond cheaper than torch's
        return t.numpy().reshape(-1).view(np.uint32)
    return t.view(torch.uint16).numpy().reshape(-1)


def _laid_out(x: torch.Tensor, conv_plan: ConvPlan) -> np.ndarray:
    """The input in the plan's layout, as a flat float32 array (``x``'s own memory where
    the layout is the input itself)."""
    if x.dtype == torch.float32 and conv_plan.in_place:
        return x.detach().contiguous().numpy().reshape(-1)
    spec = conv_plan.spec
    xs = np.empty(conv_plan.blocks * conv_plan.block_stride, dtype=np.uint32)
    _prepare(
        _bits(x),
        xs,
        conv_plan.shape_array,
        conv_plan.layout,
        16 if x.dtype == torch.bfloat16 else 0,
        spec.padding[0],
        spec.padding[2],
        spec.stride[0],
        spec.stride[1],
        conv_plan.phase_rows,
        conv_plan.phase_cols,
    )
    return xs.view(np.float32)


def run(x: torch.Tensor, conv_plan: ConvPlan) -> torch.Tensor:
    """The convolution of ``x`` (of the plan's input shape) by the plan's weight.

    Threads: ``torch.get_num_threads()``.

    Args:
        x: the input, (N, C, H, W), float32 or bfloat16.
        conv_plan: from :func:`plan` for this weight and this input shape.

    Returns:
        The output, (N, out_channels, Ho, Wo), in ``x``'s dtype.
    """
    assert tuple(x.shape) == conv_plan.input_shape  # the kernel does not check bounds
    y = torch.empty(conv_plan.out_shape)
    with _threads() as threads:
        xs = _laid_out(x, conv_plan)
        _conv_rows(
            conv_plan.start,
            conv_plan.off,
            conv_plan.values,
            conv_plan.bias,
            xs,
            y.numpy(),
            conv_plan.block_stride,
            conv_plan.columns,
            conv_plan.block,
            conv_plan.rows_per_chunk,
            conv_plan.out_block(threads),
        )
    return y if x.dtype == torch.float32 else y.to(x.dtype)


def csr_conv2d(
    x: torch.Tensor,
    crow: torch.Tensor,
    col: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    spec: ConvSpec,
    block: int | None = None,
) -> torch.Tensor:
    """``F.conv2d(x, W, bias, ...)`` with ``W`` in CSR: :func:`plan` then :func:`run`.

    Call only where :func:`usable` is True. Threads: ``torch.get_num_threads()``.

    Args:
        x: the input, (N, C, H, W).
        crow: CSR row pointers, ``out_channels + 1``.
        col: CSR column indices (int32; rows: output channels, columns: ``in_channels /
            groups * kh * kw`` in ``W``'s memory order).
        values: CSR values, in ``x``'s dtype.
        bias: ``out_channels`` values or None.
        spec: the convolution's geometry.
        block: samples interleaved in the layout copy (default: :func:`block_size`).

    Returns:
        The output, (N, out_channels, Ho, Wo), in ``x``'s dtype.
    """
    return run(x, plan(crow, col, values, bias, spec, tuple(x.shape), block))
