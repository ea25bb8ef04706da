"""Params and MACs targets on torchvision models (random weights, the input sizes of
tests/torchvision): met within 2% (achieved / requested, counted on the pruned model), or
refused with a TargetError whose least reachable value is above the request (models whose
attention stays whole). A few representative models here; the whole list with ``-m slow``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import prunekit as pk
from prunekit.measure.counting import count_macs, count_params

pytest.importorskip("torchvision")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "structured"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "torchvision"))
from test_torchvision_structured import CASES  # noqa: E402

TOLERANCE = 0.02
REPRESENTATIVE = ["resnet18", "mobilenet_v2", "convnext_tiny"]


def check_target(name: str, target: pk.Params | pk.MACs) -> None:
    factory, shape, _ = CASES[name]
    torch.manual_seed(0)
    model, x = factory().eval(), torch.randn(shape)
    count = count_params if isinstance(target, pk.Params) else (lambda m: count_macs(m, x))
    try:
        result = pk.prune(model, pk.Structured(target=target), x)
    except pk.TargetError as exc:
        least = float(exc.message.split("keeps ")[1].split()[0])
        assert least > target.fraction, exc.message
        return
    achieved = count(result.model) / count(model)
    assert achieved == pytest.approx(target.fraction, rel=TOLERANCE), name
    assert achieved <= target.fraction * (1 + 1e-3)  # never above the budget beyond rounding
    assert result.budget.achieved == pytest.approx(achieved)


@pytest.mark.parametrize("target", [pk.Params(0.5), pk.Params(0.25), pk.MACs(0.5),
                                    pk.MACs(0.25)], ids=str)
@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_representative_models(name: str, target: pk.Params | pk.MACs) -> None:
    check_target(name, target)


@pytest.mark.slow
@pytest.mark.parametrize("target", [pk.Params(0.5), pk.MACs(0.25)], ids=str)
@pytest.mark.parametrize("name", [n for n in CASES if n not in REPRESENTATIVE])
def test_every_supported_model(name: str, target: pk.Params | pk.MACs) -> None:
    check_target(name, target)
