"""The sparse-stored end state: swap pruned Linear layers for sparse ones where they win."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..apply.masks import finalize, masked_modules
from ..errors import SpecError
from ..inputs import ExampleInputs, run_example
from ..pipeline import run
from ..pipeline.verify import check_still_runs
from ..plan import Plan
from ..result import PruneResult, model_of
from ..targets import qualified_name
from .conv import CSRConv2d, unsupported_reason
from .conv_choice import decide_conv
from .dispatch import (
    KERNELS,
    KernelChoice,
    candidate_kernels,
    choose_kernel,
    sparse_module,
    weight_sparsity,
)
from .formats import choose_format
from .modules import CSRLinear, SemiStructuredLinear, dense_weight
from .whole_model import WholeModelTiming, image_input, time_whole_models

log = logging.getLogger(__name__)
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
WEIGHT_READERS = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
PARENT_REASON = "stays dense: its parent module reads the weight directly (no forward call)"


@dataclass(frozen=True)
class SparseLayer:
    """One layer of a converted model: its storage format and the kernel it runs."""

    name: str
    kind: str
    shape: tuple[int, ...]
    sparsity: float
    storage: str
    kernel: str
    dense_ms: float | None
    sparse_ms: float | None
    reason: str


@dataclass
class SparseConversion:
    """What :func:`to_sparse` returns: the converted model and one row per layer."""

    model: nn.Module
    layers: list[SparseLayer] = field(default_factory=list)
    plan: Plan | None = None  # the plan of the pruning result converted, if one was given
    # sparse convolutions chosen by timing: the whole converted model against dense
    whole_model: WholeModelTiming | None = None

    @property
    def kernels(self) -> dict[str, str]:
        """``{layer name: kernel}`` for every layer that no longer runs dense."""
        return {row.name: row.kernel for row in self.layers if row.kernel != "dense"}

    def to_dict(self) -> dict[str, Any]:
        whole = None if self.whole_model is None else asdict(self.whole_model)
        return {"layers": [asdict(row) for row in self.layers], "whole_model": whole}

    def summary(self) -> str:
        """A text table: layer, shape, sparsity, storage format, kernel, times, reason."""
        lines = [
            f"{'layer':<28} {'shape':<14} {'sparsity':>8} {'storage':<8} {'kernel':<6} "
            f"{'dense ms':>9} {'sparse ms':>9}  reason"
        ]
        for r in self.layers:
            shape = "x".join(map(str, r.shape))
            times = [
                f"{t:9.3f}" if t is not None else f"{'-':>9}" for t in (r.dense_ms, r.sparse_ms)
            ]
            lines.append(
                f"{r.name:<28} {shape:<14} {r.sparsity:>8.1%} {r.storage:<8} "
                f"{r.kernel:<6} {times[0]} {times[1]}  {r.reason}"
            )
        if self.whole_model is not None:
            lines.append(f"whole model: dense ({self.whole_model.dense_format}) / converted = "
                         f"{self.whole_model.speedup:.2f}x")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _input_shapes(model: nn.Module, example_inputs: ExampleInputs) -> dict[str, tuple[int, ...]]:
    """The input shape each Linear and Conv2d sees on ``example_inputs``."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):

            def record(_: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
                shapes[name] = tuple(args[0].shape)

            handles.append(module.register_forward_pre_hook(record))
    try:
        run_example(model, example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def _row(name: str, module: nn.Module, choice: KernelChoice) -> SparseLayer:
    weight = dense_weight(module)
    return SparseLayer(
        name,
        type(module).__name__,
        tuple(weight.shape),
        weight_sparsity(weight),
        choose_format(weight),
        choice.kernel,
        choice.dense_ms,
        choice.sparse_ms,
        choice.reason,
    )


def _check_kernel_arg(kernel: str | Mapping[str, str], model: nn.Module) -> None:
    names = [kernel] if isinstance(kernel, str) else list(kernel.values())
    allowed = ("auto", *KERNELS) if isinstance(kernel, str) else KERNELS
    bad = [k for k in names if k not in allowed]
    if bad:
        raise SpecError(f"unknown kernel {bad[0]!r}", f"choose one of {allowed}")
    if isinstance(kernel, str):
        return
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    missing = sorted(set(kernel) - set(layers))
    if missing:
        raise SpecError(f"kernel given for layers that are not nn.Linear or nn.Conv2d: "
                        f"{missing}")
    convs = {n: k for n, k in kernel.items() if isinstance(layers[n], nn.Conv2d) and k != "dense"}
    bad = [f"{n} ({unsupported_reason(layers[n]) or f'{k} is a Linear-layer kernel'})"
           for n, k in convs.items() if k != "csr" or unsupported_reason(layers[n])]
    if bad:
        raise SpecError(f"these convolutions cannot run the requested kernel: {bad}",
                        "a Conv2d runs 'csr' or 'dense'; leave the others out of kernel=")


def _decide(
    name: str,
    linear: nn.Linear,
    kernel: str | Mapping[str, str],
    rows: int,
    min_sparsity: float,
    margin: float,
) -> tuple[KernelChoice, nn.Module | None]:
    wanted = kernel if isinstance(kernel, str) else kernel.get(name, "dense")
    if wanted == "auto":
        return choose_kernel(linear, rows, min_sparsity=min_sparsity, margin=margin)
    if wanted == "dense":
        return KernelChoice("dense", None, None, "requested"), None
    if wanted not in candidate_kernels(linear):
        return KernelChoice("dense", None, None, f"{wanted} unavailable on this device/dtype"), None
    module, refusal = _sparse_or_refusal(linear, wanted)
    if module is None:
        return KernelChoice("dense", None, None, refusal), None
    return KernelChoice(wanted, None, None, "requested"), module


def _sparse_or_refusal(linear: nn.Linear, kernel: str) -> tuple[nn.Module | None, str]:
    """The sparse layer, or None and why torch's 2:4 kernels refused this layer's shape.

    Only 2:4 may refuse (its kernels accept a limited set of shapes, known only by trying);
    any other failure is a bug and propagates.
    """
    if kernel != "2:4":
        return sparse_module(linear, kernel), ""
    try:
        return sparse_module(linear, kernel), ""
    except (RuntimeError, ValueError) as exc:
        return None, f"{kernel} refused this layer: {exc}"


def to_sparse(
    model: nn.Module | PruneResult,
    example_inputs: ExampleInputs | None = None,
    *,
    batch_size: int | None = None,
    kernel: str | Mapping[str, str] = "auto",
    min_sparsity: float = 0.5,
    margin: float = 0.1,
    inplace: bool = False,
) -> SparseConversion:
    """Convert a pruned model to the sparse-stored end state.

    Masks are baked in first. Each ``nn.Linear`` whose weight is at least ``min_sparsity``
    zeros is timed dense vs sparse (CSR; 2:4 semi-structured on CUDA fp16/bf16) on this
    device at the layer's real row count, and each ``nn.Conv2d`` dense vs a direct CSR
    convolution at its real input shape (needs ``example_inputs``); a layer is replaced only
    if the sparse kernel wins by ``margin``. When convolutions went sparse by timing, the
    converted model is then timed against itself with those convolutions dense, in its
    faster memory format (NCHW or channels_last), and they are undone if it lost
    (``.whole_model``). Other convolutions stay dense; the summary says why for every layer.

    Args:
        model: a model or a :class:`PruneResult` (whose plan the conversion keeps, so that
            saving it records the same structured changes).
        example_inputs: inputs the model accepts; used to learn each layer's row count
            (batch x tokens) and to check the output shapes after conversion.
        batch_size: rows per call when ``example_inputs`` is not given (default 1).
        kernel: "auto" (time), "dense", "csr" or "2:4" for every Linear ("csr" also for
            every supported Conv2d), or ``{layer name: kernel}`` (unnamed layers stay
            dense): forced choices, no timing. A forced kernel a named layer cannot run is a
            :class:`SpecError`.
        min_sparsity: below this, a layer stays dense without timing.
        margin: required speed-up over dense, as a fraction (0.1 = 10% faster).
        inplace: convert ``model`` itself instead of a copy; any failure restores it.

    Returns:
        A :class:`SparseConversion` (``.model``, ``.layers``, ``.plan``, ``.summary()``).

    Raises:
        SpecError: bad ``kernel``, ``batch_size`` or ``min_sparsity``.
        ExampleInputError: the model does not run on ``example_inputs``.

    Example:
        >>> import prunekit as pk, torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(64, 64))
        >>> result = pk.prune(net, pk.Unstructured(sparsity=0.95))
        >>> conv = pk.to_sparse(result, kernel="csr")
        >>> type(conv.model[0]).__name__
        'CSRLinear'
    """
    plan = model.plan if isinstance(model, PruneResult) else None
    pipeline = SparsePipeline(example_inputs, batch_size, kernel, min_sparsity, margin, plan)
    return run(pipeline, model_of(model), inplace=inplace)


class SparsePipeline:
    """:func:`to_sparse` through the common skeleton (validate, copy, convert, verify)."""

    name = "to_sparse"

    def __init__(self, example_inputs: ExampleInputs | None, batch_size: int | None,
                 kernel: str | Mapping[str, str], min_sparsity: float, margin: float,
                 plan: Plan | None) -> None:
        self.example_inputs = example_inputs
        self.batch_size, self.kernel = batch_size, kernel
        self.min_sparsity, self.margin, self.plan = min_sparsity, margin, plan

    def prepare(self, model: nn.Module) -> None:
        batch_size = self.batch_size
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise SpecError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not 0.0 <= self.min_sparsity <= 1.0 or self.margin < 0:
            raise SpecError(f"min_sparsity must be in [0, 1] and margin >= 0, got "
                            f"{self.min_sparsity}, {self.margin}")
        _check_kernel_arg(self.kernel, model)
        self.masked = [name for name, _, _ in masked_modules(model)]
        self.outputs_before = None
        self.shapes: dict[str, tuple[int, ...]] = {}
        if self.example_inputs is not None:
            self.outputs_before = run_example(model, self.example_inputs)
            self.shapes = _input_shapes(model, self.example_inputs)

    def writes(self) -> list[str]:
        return self.masked  # finalize multiplies each mask into its weight in place

    def mutate(self, work: nn.Module) -> None:
        finalize(work)
        self.conversion = SparseConversion(work, plan=self.plan)
        self.timed_convs: dict[str, nn.Module] = {}  # dense convs replaced by timing
        pinned = _weight_readers(work)
        for name, module in list(work.named_modules()):
            if isinstance(module, nn.Linear) and name in pinned:
                choice = KernelChoice("dense", None, None, PARENT_REASON)
                self.conversion.layers.append(_row(name, module, choice))
            elif isinstance(module, nn.Linear):
                self._convert(work, name, module)
            elif isinstance(module, CONV_TYPES) and weight_sparsity(module.weight.detach()) > 0:
                self._convert_conv(work, name, module)
        image = image_input(self.example_inputs)
        if self.timed_convs and image is not None:
            self._keep_only_if_faster(work, image)

    def _keep_only_if_faster(self, work: nn.Module, x: torch.Tensor) -> None:
        """Undo the sparse convolutions chosen by timing if the converted model lost to
        the same model with those convolutions dense."""
        dense = copy.deepcopy(work)
        for name, conv in self.timed_convs.items():
            dense.set_submodule(name, conv)
        timing = time_whole_models(dense, work, x)
        self.conversion.whole_model = timing
        if not timing.slower:
            return
        for name, conv in self.timed_convs.items():
            work.set_submodule(name, conv)
        self.conversion.layers = [
            dataclasses.replace(row, kernel="dense", reason=timing.describe())
            if row.name in self.timed_convs else row
            for row in self.conversion.layers
        ]

    def _convert(self, work: nn.Module, name: str, linear: nn.Linear) -> None:
        shape = self.shapes.get(name)
        rows = max(1, math.prod(shape) // linear.in_features) if shape else self.batch_size or 1
        choice, replacement = _decide(name, linear, self.kernel, rows, self.min_sparsity,
                                      self.margin)
        self._swap(work, name, linear, choice, replacement)

    def _convert_conv(self, work: nn.Module, name: str, conv: nn.Module) -> None:
        wanted = self.kernel if isinstance(self.kernel, str) else self.kernel.get(name, "dense")
        choice, replacement = decide_conv(conv, wanted, self.shapes.get(name),
                                          min_sparsity=self.min_sparsity, margin=self.margin)
        if replacement is not None and wanted == "auto" and name:
            self.timed_convs[name] = conv
        self._swap(work, name, conv, choice, replacement)

    def _swap(self, work: nn.Module, name: str, dense: nn.Module, choice: KernelChoice,
              replacement: nn.Module | None) -> None:
        if replacement is not None and name:
            work.set_submodule(name, replacement)
        elif replacement is not None:  # the model is itself the layer
            self.conversion.model = replacement
        self.conversion.layers.append(_row(name, dense, choice))  # the dense layer replaced

    def verify(self, work: nn.Module) -> None:
        if self.outputs_before is not None and self.example_inputs is not None:
            check_still_runs(self.conversion.model, self.example_inputs, self.outputs_before,
                             self.name)

    def result(self, work: nn.Module) -> SparseConversion:
        return self.conversion


def check_kernels(model: nn.Module, kernels: Mapping[str, str]) -> None:
    """Raise :class:`SpecError` unless every named layer can be swapped for a sparse one."""
    pinned = _weight_readers(model)
    bad = [f"{n}={k}" for n, k in kernels.items() if not _swappable(model, n, k, pinned)]
    if bad:
        raise SpecError(
            f"cannot run these layers sparse: {bad[:5]}",
            "nn.Linear layers outside torch attention/transformer layers run csr or 2:4; "
            "nn.Conv2d layers with zero padding run csr",
        )


def _swappable(model: nn.Module, name: str, kernel: str, pinned: set[str]) -> bool:
    layer = _find(model, name)
    if isinstance(layer, nn.Linear):
        return name not in pinned and kernel in KERNELS[1:]
    return isinstance(layer, nn.Conv2d) and unsupported_reason(layer) is None and kernel == "csr"


def apply_kernels(model: nn.Module, kernels: Mapping[str, str]) -> dict[str, str]:
    """Swap the named layers of ``model`` for sparse ones, in place, no timing.

    This is how a saved sparse-stored model is restored. A Linear kernel this device cannot
    run (2:4 without CUDA fp16/bf16) leaves the layer dense, with a warning; a CSR
    convolution always applies (without its compiled kernel it computes densely, exactly).

    Args:
        model: a model without masks whose named layers are ``nn.Linear`` or ``nn.Conv2d``.
        kernels: ``{layer name: "csr" | "2:4"}``.

    Returns:
        ``{layer name: kernel}`` actually applied.
    """
    check_kernels(model, kernels)
    applied = {}
    for name, kernel in kernels.items():
        layer = model.get_submodule(name)
        if isinstance(layer, nn.Conv2d):
            model.set_submodule(name, CSRConv2d.from_conv(layer))
            applied[name] = kernel
            continue
        assert isinstance(layer, nn.Linear)  # checked above
        if kernel not in candidate_kernels(layer):
            log.warning(
                "%s: kernel %s is unavailable on this device/dtype; stays dense", name, kernel
            )
            continue
        module, refusal = _sparse_or_refusal(layer, kernel)
        if module is None:
            log.warning("%s: %s; stays dense", name, refusal)
            continue
        model.set_submodule(name, module)
        applied[name] = kernel
    return applied


def _find(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _weight_readers(model: nn.Module) -> set[str]:
    """Linear layers inside modules that read ``.weight`` themselves (torch attention and
    transformer layers: fused fast paths) instead of calling the layer."""
    return {
        qualified_name(name, child_name)
        for name, module in model.named_modules()
        if isinstance(module, WEIGHT_READERS)
        for child_name, child in module.named_modules()
        if isinstance(child, nn.Linear) and child_name
    }


def sparse_kernels(model: nn.Module) -> dict[str, str]:
    """``{module name: kernel}`` of every sparse layer in ``model`` (what a save records)."""
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, (CSRLinear, CSRConv2d)):
            found[name] = "csr"
        elif isinstance(module, SemiStructuredLinear):
            found[name] = "2:4"
    return found
