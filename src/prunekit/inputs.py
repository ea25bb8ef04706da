"""Running a model on user-given example inputs, and checking what comes out."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .errors import ExampleInputError

ExampleInputs = torch.Tensor | Sequence[Any] | Mapping[str, Any]


def call_model(model: nn.Module, example_inputs: ExampleInputs) -> Any:
    """``model(x)``, ``model(*x)`` for a tuple/list, ``model(**x)`` for a mapping."""
    if isinstance(example_inputs, Mapping):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; every submodule's own mode restored after."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


@contextlib.contextmanager
def record_calls(modules: Mapping[str, nn.Module]) -> Iterator[set[str]]:
    """Inside the block, collect the names of the given modules whose forward runs.

    The temporary hooks are removed on exit, leaving the modules as they were.
    """
    called: set[str] = set()
    handles = [
        module.register_forward_pre_hook(lambda _m, _args, name=name: called.add(name))
        for name, module in modules.items()
    ]
    try:
        yield called
    finally:
        for handle in handles:
            handle.remove()


def flat_tensors(output: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) model output, in a stable order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for key in output for t in flat_tensors(output[key])]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in flat_tensors(item)]
    if hasattr(output, "to_tuple"):  # transformers ModelOutput
        return flat_tensors(output.to_tuple())
    return []


def example_input_error(exc: Exception) -> ExampleInputError:
    """The typed error for a forward pass on the user's example inputs that raised ``exc``."""
    return ExampleInputError(
        f"the model does not run on the example inputs: {type(exc).__name__}: {exc}",
        "pass example_inputs the model accepts: a tensor, a tuple of positional "
        "arguments, or a dict of keyword arguments",
    )


def model_outputs(model: nn.Module, example_inputs: ExampleInputs) -> list[torch.Tensor]:
    """Run ``model`` in eval mode without gradients; return its output tensors.

    Errors propagate as raised (see :func:`run_example` for the user-facing wrapper).
    """
    with torch.no_grad(), eval_mode(model):
        return flat_tensors(call_model(model, example_inputs))


def run_example(model: nn.Module, example_inputs: ExampleInputs) -> list[torch.Tensor]:
    """Run the user's model on the user's example inputs, before it is changed.

    Raises:
        ExampleInputError: the forward pass fails, or returns no tensor.
    """
    try:
        tensors = model_outputs(model, example_inputs)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported the same way
        raise example_input_error(exc) from exc
    if not tensors:
        raise ExampleInputError("the model returned no tensor for the example inputs")
    return tensors
