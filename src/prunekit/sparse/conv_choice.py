"""The measured choice between a dense 2-D convolution and :class:`.conv.CSRConv2d`.

:func:`choose_conv_kernel` times dense and :class:`.conv.CSRConv2d` at a layer's real input
shape with :func:`.dispatch.time_pair` and keeps the sparse layer only where it wins by a
margin (the same rule as :func:`.dispatch.choose_kernel` for Linear layers);
:func:`decide_conv` is what :func:`prunekit.to_sparse` does with one convolution.
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F
from torch import nn

from . import conv_kernels
from .conv import KERNEL, CSRConv2d, unsupported_reason
from .dispatch import KernelChoice, below_min_sparsity, cautious_speedup, time_pair


def kernel_available(conv: nn.Conv2d) -> bool:
    """True if :class:`CSRConv2d` would run the compiled kernel for this layer's weight
    (numba installed, CPU, float32 or bfloat16): elsewhere it can only be slower than dense.
    """
    weight = conv.weight
    return (
        conv_kernels.kernels.available()
        and weight.device.type == "cpu"
        and weight.dtype in conv_kernels.DTYPES
    )


def choose_conv_kernel(
    conv: nn.Conv2d,
    input_shape: tuple[int, ...],
    *,
    min_sparsity: float = 0.5,
    margin: float = 0.1,
    repeats: int = 50,
) -> tuple[KernelChoice, nn.Module | None]:
    """Time dense and CSR for ``conv`` at its real input shape; keep CSR only if it wins.

    Both run on one random input of ``input_shape`` in alternating rounds
    (:func:`.dispatch.time_pair`, at most ``repeats`` rounds within its time budget, at
    least five); CSR is chosen only if it is at least ``margin`` faster than dense both at
    the median and at the 75th percentile (:func:`.dispatch.cautious_speedup`), so a layer
    never gets slower beyond noise.

    Args:
        conv: the (finalized) dense layer; its zeros are the pruned weights.
        input_shape: the input this layer sees, ``(N, C, H, W)`` (or ``(C, H, W)``).
        min_sparsity: below this, stay dense without timing.
        margin: CSR must be at least this fraction faster than dense.
        repeats: most timing rounds.

    Returns:
        The choice (kernel ``"csr"`` or ``"dense"``, times in ms, reason) and the
        :class:`CSRConv2d` to use, or None when dense stays.
    """
    reason = unsupported_reason(conv)
    if reason is not None:
        return KernelChoice("dense", None, None, f"unsupported: {reason}"), None
    weight = conv.weight.detach()
    too_dense = below_min_sparsity(weight, min_sparsity)
    if too_dense is not None:
        return too_dense, None
    if not kernel_available(conv):
        reason = "no sparse conv kernel for this device/dtype"
        return KernelChoice("dense", None, None, reason), None
    module = CSRConv2d.from_conv(conv)
    x = torch.randn(*input_shape, device=weight.device, dtype=weight.dtype)
    bias = None if conv.bias is None else conv.bias.detach()

    def run_dense() -> torch.Tensor:
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    def run_sparse() -> torch.Tensor:
        out: torch.Tensor = module(x)
        return out

    dense_times, sparse_times = time_pair(
        run_dense, run_sparse, weight.device, max_rounds=max(5, repeats)
    )
    dense_ms = statistics.median(dense_times) * 1e3
    sparse_ms = statistics.median(sparse_times) * 1e3
    speedup = cautious_speedup(dense_times, sparse_times)
    if speedup >= 1.0 + margin:
        return KernelChoice(KERNEL, dense_ms, sparse_ms, f"csr {speedup:.2f}x dense"), module
    return KernelChoice("dense", dense_ms, sparse_ms, f"csr only {speedup:.2f}x dense"), None


def decide_conv(
    conv: nn.Module,
    wanted: str,
    input_shape: tuple[int, ...] | None,
    *,
    min_sparsity: float,
    margin: float,
) -> tuple[KernelChoice, nn.Module | None]:
    """What :func:`prunekit.to_sparse` does with one 2-D convolution.

    Args:
        conv: the (finalized) convolution, of any kind (only ``nn.Conv2d`` can go sparse).
        wanted: ``"auto"`` (time it at ``input_shape``), ``"dense"``, or ``"csr"`` (forced).
        input_shape: the input the layer sees on the example inputs, or None if unknown.
        min_sparsity: below this, ``"auto"`` stays dense without timing.
        margin: CSR must be at least this fraction faster than dense.

    Returns:
        The choice and the :class:`CSRConv2d` to use, or None when the layer stays dense.
    """
    if wanted == "dense":
        return KernelChoice("dense", None, None, "requested"), None
    reason = unsupported_reason(conv)
    if reason is not None or not isinstance(conv, nn.Conv2d):
        return KernelChoice("dense", None, None, f"unsupported: {reason}"), None
    if wanted == "csr":
        return KernelChoice(KERNEL, None, None, "requested"), CSRConv2d.from_conv(conv)
    if wanted != "auto":
        return KernelChoice("dense", None, None, f"{wanted} is a Linear-layer kernel"), None
    if input_shape is None:
        return KernelChoice("dense", None, None,
                            "not timed: pass example_inputs to time convolutions"), None
    return choose_conv_kernel(conv, input_shape, min_sparsity=min_sparsity, margin=margin)
