"""Fault injection for a budgeted structured pruning: a failure while validating (in the
cost model), halfway through the cut, or of the changed model leaves the model as it was
(the checks of tests/pipeline, run on a MACs target)."""

from __future__ import annotations

from typing import Any

import pytest
from test_pipeline_faults import Case, Injected, _expect_internal, _fail_on_call
from torch import nn

import prunekit as pk
from prunekit.structured import StructuredPipeline

CASE = Case(
    "structured-target", lambda: pk.zoo.build("resnet"),
    lambda m, i: pk.prune(m, pk.Structured(target=pk.MACs(0.4)), pk.zoo.example_inputs("resnet"),
                          inplace=i),
    StructuredPipeline, "prunekit.budget.planner.macs_cost",
    "prunekit.apply.surgery.slicing._set_tensor",
)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "copy"])
def test_failure_while_validating(inplace: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_on_call(monkeypatch, CASE.validate_step, 1)
    error = _expect_internal(CASE, CASE.build(), inplace)
    assert "while validating" in str(error) and isinstance(error.__cause__, Injected)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "copy"])
def test_failure_halfway_through_the_change(inplace: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fail_on_call(monkeypatch, CASE.mutate_step, 2)
    error = _expect_internal(CASE, CASE.build(), inplace)
    assert calls[0] >= 2
    assert "changing the model" in str(error) and isinstance(error.__cause__, Injected)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "copy"])
def test_failure_of_the_changed_model(inplace: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    original = StructuredPipeline.mutate

    def mutate_then_break(self: Any, work: nn.Module) -> None:
        original(self, work)

        def explode(*_: Any) -> None:
            raise Injected("the changed model fails")

        work.register_forward_pre_hook(explode)

    monkeypatch.setattr(StructuredPipeline, "mutate", mutate_then_break)
    error = _expect_internal(CASE, CASE.build(), inplace, pk.PruningBrokeModelError)
    assert "broke the model" in str(error)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "copy"])
def test_failure_while_re_cutting(inplace: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first cut measures off its estimate (so it is undone and cut again), and the
    second measurement fails: the model still comes back as it was."""
    import prunekit.budget.planner as planner

    original = planner.count_macs
    calls = [0]

    def miscount_then_fail(model: nn.Module, inputs: Any) -> int:
        calls[0] += 1
        if calls[0] == 1:
            return original(model, inputs) * 2  # off the estimate: re-cut
        raise Injected("measuring the second cut failed")

    monkeypatch.setattr(planner, "count_macs", miscount_then_fail)
    error = _expect_internal(CASE, CASE.build(), inplace)
    assert calls[0] == 2 and isinstance(error.__cause__, Injected)
