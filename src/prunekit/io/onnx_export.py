"""ONNX export of a pruned model, and a check that onnxruntime reproduces PyTorch.

Masks are baked in and sparse layers turned back into dense ``nn.Linear`` on a copy first:
ONNX runtimes run dense weights, so an exported masked or sparse model is as fast as the
dense one. Physically pruned (structured) models export smaller and faster.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..apply.masks import finalize
from ..errors import ExampleInputError, FormatError, UnsupportedModelError
from ..inputs import ExampleInputs, run_example
from ..result import PruneResult, model_of
from ..sparse.conv import CSRConv2d, to_conv
from ..sparse.modules import CSRLinear, SemiStructuredLinear, to_linear
from .atomic import atomic_path, check_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnnxCheck:
    """Outcome of :func:`check_onnx`."""

    max_abs_diff: float
    outputs: int
    ok: bool


def exportable_copy(model: nn.Module | PruneResult) -> nn.Module:
    """A copy with masks baked in and sparse layers dense again, in eval mode.

    Raises:
        SpecError: ``model`` is neither a module nor a :class:`PruneResult`.
    """
    work = copy.deepcopy(model_of(model))
    finalize(work)
    for name, module in list(work.named_modules()):
        if isinstance(module, (CSRLinear, SemiStructuredLinear)):
            work.set_submodule(name, to_linear(module))
        elif isinstance(module, CSRConv2d):
            work.set_submodule(name, to_conv(module))
    return work.eval()


def _as_args(example_inputs: ExampleInputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    return (example_inputs,), {}


def export_onnx(
    model: nn.Module | PruneResult,
    example_inputs: ExampleInputs,
    path: str | Path,
    *,
    overwrite: bool = False,
    opset: int = 18,
) -> Path:
    """Export ``model`` to a single ONNX file, atomically.

    Args:
        model: a module in any end state (masks and sparse layers are made dense on a
            copy), or a :class:`PruneResult` (its ``.model``).
        example_inputs: inputs the model accepts (tensor, tuple or dict).
        path: the ``.onnx`` file to write.
        overwrite: replace an existing file.
        opset: ONNX opset version.

    Returns:
        The written path.

    Raises:
        SpecError: ``model`` is neither a module nor a :class:`PruneResult`.
        ArtifactExistsError: ``path`` exists and ``overwrite`` is False.
        ExampleInputError: the model does not run on ``example_inputs``.
        UnsupportedModelError: the exporter cannot express the model.
    """
    module = model_of(model)
    path = Path(path)
    check_target(path, overwrite)
    work = exportable_copy(module)
    run_example(work, example_inputs)
    program = _onnx_program(work, example_inputs, opset)
    with atomic_path(path, overwrite) as tmp:
        try:
            program.save(str(tmp), external_data=False)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types
            raise _export_failed(exc) from exc
    return path


def _onnx_program(work: nn.Module, example_inputs: ExampleInputs, opset: int) -> Any:
    """torch's ONNX program for ``work`` (dynamo exporter, weights inline)."""
    args, kwargs = _as_args(example_inputs)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                work,
                args,
                None,
                kwargs=kwargs or None,
                dynamo=True,
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        raise _export_failed(exc) from exc
    if program is None:
        raise _export_failed(RuntimeError("torch.onnx.export returned no program"))
    return program


def _export_failed(exc: Exception) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"ONNX export failed: {type(exc).__name__}: {exc}",
        "try another opset, or report the model",
    )


def _feeds(session: Any, example_inputs: ExampleInputs) -> dict[str, np.ndarray]:
    args, kwargs = _as_args(example_inputs)
    values: Sequence[Any] = [*args, *kwargs.values()]
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(tensors):
        raise ExampleInputError(f"the ONNX model takes {len(names)} inputs, got {len(tensors)}")
    return {n: t.detach().cpu().numpy() for n, t in zip(names, tensors, strict=True)}


def check_onnx(
    model: nn.Module | PruneResult,
    example_inputs: ExampleInputs,
    path: str | Path,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> OnnxCheck:
    """Run the ONNX file with onnxruntime (CPU) and compare with the PyTorch model.

    Args:
        model: the module that was exported, or its :class:`PruneResult`.
        example_inputs: inputs the model accepts (tensor, tuple or dict).
        path: the ``.onnx`` file.
        rtol: relative tolerance per output element.
        atol: absolute tolerance per output element.

    Returns:
        :class:`OnnxCheck` with the largest absolute difference over all outputs and
        ``ok`` = every output is within ``atol + rtol * |torch output|``.

    Raises:
        SpecError: ``model`` is neither a module nor a :class:`PruneResult`.
        FormatError: the file cannot be loaded by onnxruntime.
    """
    module = model_of(model)
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors
        raise FormatError(f"onnxruntime cannot load {path}: {exc}") from exc
    expected = [
        t.detach().cpu().float().numpy()
        for t in run_example(exportable_copy(module), example_inputs)
    ]
    got = session.run(None, _feeds(session, example_inputs))
    if len(got) != len(expected):
        return OnnxCheck(float("inf"), len(got), False)
    diffs = [
        float(np.abs(g.astype(np.float32) - e).max(initial=0.0))
        for g, e in zip(got, expected, strict=True)
    ]
    ok = all(np.allclose(g, e, rtol=rtol, atol=atol) for g, e in zip(got, expected, strict=True))
    return OnnxCheck(max(diffs, default=0.0), len(got), ok)


__all__ = ["OnnxCheck", "check_onnx", "export_onnx", "exportable_copy"]
