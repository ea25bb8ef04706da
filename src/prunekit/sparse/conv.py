"""2-D convolutions that compute with a CSR weight (the measured choice between them and
dense is :mod:`.conv_choice`).

- :class:`CSRConv2d`: an ``nn.Conv2d`` whose weight is stored as CSR (one row per output
  channel over ``in_channels / groups * kh * kw``, int32 indices). On the CPU, in float32 or
  bfloat16, with no gradient needed and numba installed, it runs the direct sparse
  convolution of :mod:`.conv_kernels`; anywhere else ``F.conv2d`` with the dense weight
  (exact, differentiable, any device).

Supported: any ``nn.Conv2d`` with ``padding_mode="zeros"`` (stride, padding including
``"same"``/``"valid"``, dilation, groups, bias). Transposed, 1-D and 3-D convolutions,
other padding modes and subclasses with their own ``forward`` are refused
(:func:`unsupported_reason`).

Each layer takes and returns NCHW tensors; no layout is kept between consecutive sparse
layers. Measured here (64x32x28x28, one thread): the layout copy costs 10-30% of a sparse
call (less at small images), and a batch-innermost tensor would not survive what sits
between ResNet convolutions: torch's BatchNorm takes 23 ms on it instead of 1.5 ms on NCHW
and returns NCHW.
"""

from __future__ import annotations

import math
import operator
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from . import conv_kernels

KERNEL = "csr"  # the kernel name a CSRConv2d layer runs (as for CSRLinear)
MAX_PLANS = 8  # input shapes whose kernel plans a layer keeps

Pair = tuple[int, int]


def unsupported_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot become a :class:`CSRConv2d`, or None if it can.

    Args:
        module: any module.

    Returns:
        None for an ``nn.Conv2d`` with zero padding whose ``forward`` is torch's own; a
        one-line reason otherwise.
    """
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return f"{type(module).__name__} is a transposed convolution"
    if not isinstance(module, nn.Conv2d):
        return f"{type(module).__name__} is not a 2-D convolution"
    if module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r} (only 'zeros' is supported)"
    overridden = [
        name
        for name in ("forward", "_conv_forward")
        if getattr(type(module), name) is not getattr(nn.Conv2d, name)
    ]
    if overridden:
        return f"{type(module).__name__} overrides {overridden[0]}()"
    return None


def _resolved_padding(
    padding: str | Pair, kernel_size: Pair, dilation: Pair
) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)``: ``"same"`` puts the odd extra row/column at the end,
    as torch does."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        sides = []
        for k, d in zip(kernel_size, dilation, strict=True):
            total = d * (k - 1)
            sides += [total // 2, total - total // 2]
        return (sides[0], sides[1], sides[2], sides[3])
    assert not isinstance(padding, str)
    return (padding[0], padding[0], padding[1], padding[1])


class CSRConv2d(nn.Module):
    """A Conv2d layer whose weight is stored, and multiplied, in CSR form.

    The CSR parts are ordinary buffers (``crow``, ``col`` int32, ``values``), so the module
    moves between devices, deep-copies and pickles like any other, and ``state_dict`` holds
    exactly what a save must store. The logical weight is ``(out_channels, in_channels /
    groups, kh, kw)``; :meth:`dense_weight` rebuilds it.

    Args:
        crow: CSR row pointers, ``out_channels + 1`` (stored as int32).
        col: CSR column indices into ``in_channels / groups * kh * kw`` (the weight's
            memory order per output channel; stored as int32).
        values: the kept weights, in the layer's dtype.
        in_channels: input channels.
        kernel_size, stride, padding, dilation, groups: as for ``nn.Conv2d`` (zero
            padding; ``padding`` may be ``"same"`` or ``"valid"``).
        bias: ``out_channels`` values or None (copied into a parameter).

    Example:
        >>> conv = torch.nn.Conv2d(4, 6, 3, padding=1)
        >>> sparse = CSRConv2d.from_conv(conv)
        >>> x = torch.randn(2, 4, 8, 8)
        >>> torch.allclose(sparse(x), conv(x), atol=1e-5)
        True
    """

    crow: torch.Tensor
    col: torch.Tensor
    values: torch.Tensor
    bias: nn.Parameter | None

    def __init__(
        self,
        crow: torch.Tensor,
        col: torch.Tensor,
        values: torch.Tensor,
        in_channels: int,
        kernel_size: Pair,
        stride: Pair = (1, 1),
        padding: str | Pair = (0, 0),
        dilation: Pair = (1, 1),
        groups: int = 1,
        bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = crow.numel() - 1
        self.kernel_size: Pair = _pair(kernel_size)
        self.stride: Pair = _pair(stride)
        self.padding: str | Pair = padding if isinstance(padding, str) else _pair(padding)
        self.dilation: Pair = _pair(dilation)
        self.groups = groups
        self.padding_mode = "zeros"
        self.register_buffer("crow", crow.to(torch.int32))
        self.register_buffer("col", col.to(torch.int32))
        self.register_buffer("values", values)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self._plans: dict[tuple[int, ...], tuple[Any, Any, conv_kernels.ConvPlan]] = {}

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> CSRConv2d:
        """Convert a dense ``nn.Conv2d`` (its zeros are dropped) into a CSR one.

        Raises:
            UnsupportedModelError: not a zero-padded ``nn.Conv2d`` (see
                :func:`unsupported_reason`).
        """
        reason = unsupported_reason(conv)
        if reason is not None:
            raise UnsupportedModelError(
                f"cannot run {type(conv).__name__} as a sparse convolution: {reason}",
                "keep this layer dense (CSRConv2d covers nn.Conv2d with padding_mode='zeros')",
            )
        weight = conv.weight.detach()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            csr = weight.reshape(weight.shape[0], -1).to_sparse_csr()
        return cls(
            csr.crow_indices(),
            csr.col_indices(),
            csr.values().clone(),
            conv.in_channels,
            _pair(conv.kernel_size),
            _pair(conv.stride),
            conv.padding if isinstance(conv.padding, str) else _pair(conv.padding),
            _pair(conv.dilation),
            conv.groups,
            None if conv.bias is None else conv.bias,
        )

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """The logical weight's shape, ``(out, in / groups, kh, kw)``."""
        kh, kw = self.kernel_size
        return (self.out_channels, self.in_channels // self.groups, kh, kw)

    @property
    def nnz(self) -> int:
        return self.values.numel()

    def spec(self) -> conv_kernels.ConvSpec:
        """The geometry the compiled kernel takes (padding resolved)."""
        return conv_kernels.ConvSpec(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            _resolved_padding(self.padding, self.kernel_size, self.dilation),
            self.dilation,
            self.groups,
        )

    def dense_weight(self) -> torch.Tensor:
        """The weight as a dense tensor (the layer this one replaced computes the same)."""
        out, *rest = self.weight_shape
        rows = torch.repeat_interleave(
            torch.arange(out, device=self.crow.device), self.crow.diff().long()
        )
        flat = torch.zeros(out, rest[0] * rest[1] * rest[2], dtype=self.values.dtype,
                           device=self.values.device)
        flat[rows, self.col.long()] = self.values
        return flat.reshape(self.weight_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # unbatched (C, H, W), as nn.Conv2d accepts
            return self.forward(x.unsqueeze(0)).squeeze(0)
        values = self._buffers["values"]  # nn.Module's lookup costs ~1.5 us per buffer
        assert values is not None
        if conv_kernels.usable(x, values, self.bias):
            conv_plan = self.kernel_plan(tuple(x.shape))
            if conv_plan is not None:
                return conv_kernels.run(x, conv_plan)
        return self.dense_forward(x)  # also raises torch's own errors for a wrong input

    def kernel_plan(self, input_shape: tuple[int, ...]) -> conv_kernels.ConvPlan | None:
        """The compiled kernel's plan for inputs of ``input_shape`` (N, C, H, W), or None if
        such an input does not fit this layer (then torch raises its own error).

        A plan (each kept weight's input offset: rebuilding it costs as much as a small
        convolution) is kept for the next call and used while ``crow``, ``col``, ``values``
        and ``bias`` are the very tensors it was built from (it holds them) and none was
        changed in place (inference tensors, made in ``torch.inference_mode``, have no
        version counter: for them the identity alone decides).
        """
        buffers = self._buffers  # nn.Module's attribute lookup costs ~1.5 us per buffer
        parts = (buffers["crow"], buffers["col"], buffers["values"], self.bias)
        versions = [None if t is None or t.is_inference() else t._version for t in parts]
        kept = self._plans.get(input_shape)
        if kept is not None and kept[1] == versions and all(map(operator.is_, kept[0], parts)):
            return kept[2]
        spec = self.spec()
        if not _fits(input_shape, spec):
            return None
        found = conv_kernels.plan(self.crow, self.col, self.values, self.bias, spec, input_shape)
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[input_shape] = (parts, versions, found)
        return found

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plans"] = {}  # derived data: rebuilt on the next call
        return state

    def dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``F.conv2d`` with the dense weight: the exact fallback (gradients, any device)."""
        return F.conv2d(
            x, self.dense_weight(), self.bias, self.stride, self.padding, self.dilation,
            self.groups,
        )

    def extra_repr(self) -> str:
        density = self.nnz / max(1, math.prod(self.weight_shape))
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding not in ((0, 0), "valid"):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + f", bias={self.bias is not None}, density={density:.3f}"


def _fits(input_shape: tuple[int, ...], spec: conv_kernels.ConvSpec) -> bool:
    """True if an input of ``input_shape`` has the layer's input channels and yields a
    non-empty output (the kernel does not check bounds; torch's error is the one to raise
    otherwise)."""
    if len(input_shape) != 4 or 0 in input_shape:
        return False
    out_h, out_w = spec.out_size(input_shape[2], input_shape[3])
    return input_shape[1] == spec.in_channels and out_h > 0 and out_w > 0


def _pair(value: int | tuple[int, ...]) -> Pair:
    if isinstance(value, int):
        return (value, value)
    return (value[0], value[1])


def to_conv(module: CSRConv2d) -> nn.Conv2d:
    """The equivalent dense ``nn.Conv2d`` (for export and for saving).

    Args:
        module: the sparse layer.

    Returns:
        A new ``nn.Conv2d`` on the same device and dtype, with the same weight and bias.
    """
    weight = module.dense_weight().detach()
    conv = nn.Conv2d(
        module.in_channels,
        module.out_channels,
        module.kernel_size,
        module.stride,
        module.padding,
        module.dilation,
        module.groups,
        bias=module.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(weight)
        if module.bias is not None and conv.bias is not None:
            conv.bias.copy_(module.bias.detach())
    return conv
