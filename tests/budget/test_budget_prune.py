"""pk.prune with a Params / MACs target: met, reported, saved; limits and ignore lists
respected; unreachable targets refused before the model is touched."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from model_state import assert_same_state, model_state

import prunekit as pk
from prunekit.budget.report import BudgetResult
from prunekit.measure.counting import count_macs, count_params

TOLERANCE = 0.02  # achieved / requested


@pytest.mark.parametrize("name", ["resnet", "fmnist_resnet", "inverted_residual_se"])
@pytest.mark.parametrize("target", [pk.Params(0.5), pk.MACs(0.5), pk.Params(0.25),
                                    pk.MACs(0.25)], ids=str)
def test_targets_are_met_on_zoo_models(name: str, target) -> None:
    model, x = pk.zoo.build(name).eval(), pk.zoo.example_inputs(name)
    result = pk.prune(model, pk.Structured(target=target), x)
    achieved = _achieved(model, result.model, x, target)
    assert achieved == pytest.approx(target.fraction, rel=TOLERANCE)
    assert result.budget.achieved == pytest.approx(achieved)
    assert result.budget.requested == target.fraction
    assert result.model(x).shape == model(x).shape


@pytest.mark.parametrize("name", ["densenet_block", "shufflenet_block", "vit_block"])
@pytest.mark.parametrize("target", [pk.Params(0.5), pk.MACs(0.25)], ids=str)
def test_tiny_models_stay_within_the_budget(name: str, target) -> None:
    """A channel of these is 1-4% of the model: the budget is never exceeded, and the
    result comes as close as single channels allow (a miss beyond 2% is noted)."""
    model, x = pk.zoo.build(name).eval(), pk.zoo.example_inputs(name)
    result = pk.prune(model, pk.Structured(target=target), x)
    achieved = _achieved(model, result.model, x, target)
    assert target.fraction * 0.9 <= achieved <= target.fraction * 1.001
    missed = abs(achieved / target.fraction - 1) > TOLERANCE
    assert bool(result.budget.notes) == missed


def _achieved(model: torch.nn.Module, pruned: torch.nn.Module, x: torch.Tensor,
              target) -> float:
    if isinstance(target, pk.Params):
        return count_params(pruned) / count_params(model)
    return count_macs(pruned, x) / count_macs(model, x)


def test_the_report_is_on_the_result_the_plan_and_its_json(tmp_path: Path) -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    result = pk.prune(model, pk.Structured(target=pk.MACs(0.25), round_to=4), x)
    assert isinstance(result, BudgetResult) and isinstance(result, pk.PruneResult)
    report = result.budget
    assert report.params_before == count_params(model)
    assert report.params_after == count_params(result.model)
    assert report.macs_before == count_macs(model, x)
    assert report.macs_after == count_macs(result.model, x)
    assert report.latency is None
    stored = json.loads(result.plan.to_json())
    assert stored["budget"]["achieved"] == pytest.approx(report.achieved)
    assert stored["budget"]["target"] == {"kind": "macs", "fraction": 0.25}
    assert stored["spec"]["target"] == {"kind": "macs", "fraction": 0.25}
    assert "budget macs 0.250: achieved" in str(report)
    pk.save(result, tmp_path / "small")
    loaded = pk.load(tmp_path / "small")
    assert torch.allclose(loaded.eval()(x), result.model(x), atol=1e-6)
    manifest = json.loads((tmp_path / "small" / "manifest.json").read_text())
    assert manifest["plan"]["budget"]["target"]["kind"] == "macs"


def test_round_to_and_min_channels_hold_under_a_budget() -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    result = pk.prune(model, pk.Structured(target=pk.MACs(0.3), round_to=8, min_channels=8),
                      x)
    for name, module in result.model.named_modules():
        if isinstance(module, torch.nn.Conv2d) and name != "stem.0":
            assert module.out_channels % 8 == 0 and module.out_channels >= 8, name


def test_an_ignored_layer_keeps_its_weights() -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    ignored = "stages.1.0.conv1"
    before = model.get_submodule(ignored).weight.detach().clone()
    result = pk.prune(model, pk.Structured(target=pk.MACs(0.4)), x, ignore=[ignored])
    assert torch.equal(result.model.get_submodule(ignored).weight, before)
    assert result.budget.macs_ratio == pytest.approx(0.4, rel=TOLERANCE)


@pytest.mark.parametrize("inplace", [True, False])
def test_an_unreachable_target_is_refused_before_the_model_is_touched(inplace: bool) -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    before = model_state(model)
    with pytest.raises(pk.TargetError) as info:
        pk.prune(model, pk.Structured(target=pk.MACs(0.05)), x, ignore=["stages.0"],
                 inplace=inplace)
    assert_same_state(before, model_state(model))
    message = str(info.value)
    assert "MACs(0.05) cannot be met" in message and "ask for MACs(0." in message
    least = float(message.split("ask for MACs(")[1].split(")")[0])
    reached = pk.prune(model, pk.Structured(target=pk.MACs(least)), x, ignore=["stages.0"])
    assert reached.budget.macs_ratio <= least * (1 + TOLERANCE)


def test_overrides_fix_their_layer_under_a_budget() -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    result = pk.prune(model, pk.Structured(target=pk.Params(0.5)), x,
                      overrides={"stages.2.0.conv1": 0.25})
    assert result.model.stages[2][0].conv1.out_channels == 48  # 64 less 25%
    assert result.budget.params_ratio == pytest.approx(0.5, rel=TOLERANCE)


def test_a_target_of_one_removes_nothing() -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    result = pk.prune(model, pk.Structured(target=pk.Params(1.0)), x)
    assert count_params(result.model) == count_params(model)
    assert result.plan.kept == {}


def test_a_target_unreachable_once_a_failed_cut_pins_channels_is_refused_and_undone() -> None:
    """Channels a module reshapes with are only found by a failed first cut: the target is
    then refused with the new least, and an in-place model is restored."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "structured"))
    from test_structured_bad_input import HardCodedView

    model, x = HardCodedView(), torch.randn(2, 6)
    before = model_state(model)
    with pytest.raises(pk.TargetError, match="pinned; with every prunable group"):
        pk.prune(model, pk.Structured(target=pk.Params(0.5)), x, inplace=True)
    assert_same_state(before, model_state(model))
