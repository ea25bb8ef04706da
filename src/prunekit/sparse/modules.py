"""Linear layers that compute with a sparse weight.

- :class:`CSRLinear`: ``y = (W_csr @ x^T)^T + b`` with ``torch.sparse.mm`` and int32
  indices (the fastest stock CPU path; ``F.linear`` with a sparse weight is slower), or
  from :data:`.kernels.MIN_ROWS` input rows on, when neither the input nor the bias needs
  a gradient, the compiled kernel of :mod:`.kernels`.
- :class:`SemiStructuredLinear`: a 2:4 weight as torch's semi-structured sparse tensor
  (cuSPARSELt / CUTLASS), CUDA with fp16 / bf16 only.

Both keep the logical ``(out_features, in_features)`` shape and expose :meth:`dense_weight`,
so saving, exporting and summaries see the same weight as the dense layer they replace.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels


def _csr(
    crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


class CSRLinear(nn.Module):
    """A Linear layer whose weight is stored and multiplied in CSR form.

    The CSR parts are ordinary buffers (``crow``, ``col`` int32, ``values``), so the module
    moves between devices, deep-copies and pickles like any other; the sparse tensor is
    assembled per call (microseconds).

    Example:
        >>> lin = torch.nn.Linear(8, 4)
        >>> sparse = CSRLinear.from_linear(lin)
        >>> x = torch.randn(2, 8)
        >>> torch.allclose(sparse(x), lin(x), atol=1e-6)
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
        in_features: int,
        bias: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = crow.numel() - 1
        self.register_buffer("crow", crow.to(torch.int32))
        self.register_buffer("col", col.to(torch.int32))
        self.register_buffer("values", values)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> CSRLinear:
        """Convert a dense Linear (its zeros are dropped) into a CSR one."""
        weight = linear.weight.detach()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            csr = weight.to_sparse_csr()
        return cls(
            csr.crow_indices(),
            csr.col_indices(),
            csr.values().clone(),
            linear.in_features,
            None if linear.bias is None else linear.bias,
        )

    def weight_csr(self) -> torch.Tensor:
        """The weight as a torch sparse CSR tensor, shape ``(out_features, in_features)``."""
        return _csr(self.crow, self.col, self.values, (self.out_features, self.in_features))

    def dense_weight(self) -> torch.Tensor:
        """The weight as a dense tensor (the layer this one replaced computes the same)."""
        return self.weight_csr().to_dense()

    @property
    def nnz(self) -> int:
        return self.values.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # (N, in)
        if kernels.usable(rows, self.values, self.bias):
            y = kernels.csr_linear(rows, self.crow, self.col, self.values, self.bias)
        else:
            y = self.torch_product(rows)
        return y.reshape(*x.shape[:-1], self.out_features)

    def torch_product(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows W^T + b`` for ``rows`` of shape ``(N, in)`` with torch's CSR kernel.

        torch has no CPU CSR product in bf16 / fp16: there it runs in float32 and the
        result is rounded to the input's dtype.
        """
        weight, x = self.weight_csr(), rows.t().contiguous()
        if rows.device.type == "cpu" and rows.dtype in (torch.float16, torch.bfloat16):
            size = (self.out_features, self.in_features)
            weight, x = _csr(self.crow, self.col, self.values.float(), size), x.float()
        out = torch.sparse.mm(weight, x).t().to(rows.dtype)  # (N, out)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.in_features * self.out_features)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, density={density:.3f}"
        )


def semi_structured_available(weight: torch.Tensor) -> bool:
    """True on CUDA with fp16 / bf16, where torch's 2:4 semi-structured kernels may run."""
    return (
        weight.is_cuda
        and weight.dtype in (torch.float16, torch.bfloat16)
        and hasattr(torch.sparse, "to_sparse_semi_structured")
    )


class SemiStructuredLinear(nn.Module):
    """A Linear layer whose 2:4 weight is a torch semi-structured sparse tensor (CUDA only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if not semi_structured_available(linear.weight):
            raise ValueError("2:4 semi-structured kernels need a CUDA fp16/bf16 weight")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        sparse = torch.sparse.to_sparse_semi_structured(linear.weight.detach())
        self.weight = nn.Parameter(sparse, requires_grad=False)
        self.bias = linear.bias

    def dense_weight(self) -> torch.Tensor:
        return self.weight.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The logical dense weight of a dense layer or of a sparse one (CSR Linear or Conv2d,
    semi-structured; each has a ``dense_weight()`` method), detached."""
    sparse = getattr(module, "dense_weight", None)
    if callable(sparse):
        value: torch.Tensor = sparse()
        return value.detach()
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    return weight.detach()


def to_linear(module: CSRLinear | SemiStructuredLinear) -> nn.Linear:
    """The equivalent dense ``nn.Linear`` (for export and for saving)."""
    weight = module.dense_weight().detach()
    linear = nn.Linear(
        module.in_features,
        module.out_features,
        bias=module.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        linear.weight.copy_(weight)
        if module.bias is not None:
            linear.bias.copy_(module.bias.detach())
    return linear
