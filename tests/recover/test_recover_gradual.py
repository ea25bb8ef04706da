"""Gradual magnitude pruning: the cubic schedule, masks that only grow, the final sparsity."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from toy_task import toy_problem

import prunekit as pk
from prunekit.apply.masks import effective_weight, existing_mask
from prunekit.data import TensorLoader
from prunekit.errors import PlanError, SpecError
from prunekit.recover import (
    GradualPruner,
    GradualSchedule,
    RecoveryConfig,
    RecoveryStep,
    check_unchanged,
    finetune,
    snapshot,
)


def _problem(seed: int = 0) -> tuple[nn.Module, TensorLoader]:
    return toy_problem(seed, batch=32)


def _sparsity(model: nn.Module) -> float:
    weights = [effective_weight(m) for m in model.modules() if isinstance(m, nn.Linear)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def _accuracy(model: nn.Module, loader: TensorLoader) -> float:
    with torch.no_grad():
        return float(torch.cat([(model(x).argmax(-1) == y).float() for x, y in loader]).mean())


def _global(sparsity: float) -> pk.Unstructured:
    return pk.Unstructured(sparsity=sparsity, scope="global")


def test_schedule_is_cubic_between_start_and_end() -> None:
    schedule = GradualSchedule(0.9, initial_sparsity=0.1, start_fraction=0.1, end_fraction=0.5)
    total = 100  # ramp over steps 10..50
    assert schedule.sparsity_at(0, total) == pytest.approx(0.1)
    assert schedule.sparsity_at(10, total) == pytest.approx(0.1)
    assert schedule.sparsity_at(30, total) == pytest.approx(0.9 - 0.8 * 0.5**3)
    assert schedule.sparsity_at(50, total) == pytest.approx(0.9)
    assert schedule.sparsity_at(99, total) == pytest.approx(0.9)
    values = [schedule.sparsity_at(s, total) for s in range(total)]
    assert values == sorted(values)


def test_update_steps_cover_the_ramp_and_end_on_the_final_step() -> None:
    schedule = GradualSchedule(0.8, end_fraction=0.6, every=16)
    steps = schedule.update_steps(100)
    assert steps == [16, 32, 48, 60]
    assert schedule.sparsity_at(steps[-1], 100) == pytest.approx(0.8)
    assert GradualSchedule(0.8, end_fraction=1.0, every=7).update_steps(10)[-1] == 9


@pytest.mark.parametrize("kwargs", [
    {"final_sparsity": 1.0}, {"final_sparsity": 0.5, "initial_sparsity": 0.6},
    {"final_sparsity": 0.5, "start_fraction": 0.7, "end_fraction": 0.6},
    {"final_sparsity": 0.5, "every": 0},
])
def test_bad_schedules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(SpecError, match="bad gradual schedule"):
        GradualSchedule(**kwargs)  # type: ignore[arg-type]


def test_finetune_with_a_pruner_reaches_the_target_with_growing_masks() -> None:
    model, loader = _problem()
    finetune(model, loader, RecoveryConfig(epochs=4, lr=0.1), progress=False)
    pruner = GradualPruner(GradualSchedule(0.85, end_fraction=0.5, every=4), _global)
    history: list[dict[str, torch.Tensor]] = []
    config = RecoveryConfig(epochs=2, lr=0.05)
    total = 2 * len(loader)
    step = RecoveryStep(model, config, total, pruner=pruner)
    pruner.start(model, total)
    for _ in range(config.epochs):
        for x, y in loader:
            step(x, y)
            history.append({n: existing_mask(m).clone() for n, m in model.named_modules()
                            if existing_mask(m) is not None})
    assert _sparsity(model) == pytest.approx(0.85, abs=1e-3)
    assert pruner.updates == len(GradualSchedule(0.85, end_fraction=0.5, every=4)
                                 .update_steps(total))
    for earlier, later in zip(history, history[1:], strict=False):
        for name, mask in later.items():
            assert not bool((mask & ~earlier.get(name, torch.ones_like(mask))).any())
    assert len(history[-1]) == 2  # both layers masked


def test_pruner_on_a_dense_model_keeps_the_optimizer_working() -> None:
    model, loader = _problem()
    pruner = GradualPruner(GradualSchedule(0.5, end_fraction=0.5, every=2), _global)
    weight = model[0].weight
    before = weight.detach().clone()
    report = finetune(model, loader, RecoveryConfig(epochs=1, lr=0.05), progress=False,
                      pruner=pruner)
    assert report.steps == len(loader)
    assert model[0].weight_orig is weight  # the same Parameter, trained after masking
    kept = model[0].weight_mask.bool()
    assert not torch.equal(weight.detach()[kept], before[kept])
    assert _sparsity(model) == pytest.approx(0.5, abs=1e-3)


def test_initial_sparsity_is_applied_before_the_first_step() -> None:
    model, loader = _problem()
    pruner = GradualPruner(GradualSchedule(0.8, initial_sparsity=0.4, start_fraction=0.5,
                                           end_fraction=0.9), _global)
    pruner.start(model, 100)
    assert _sparsity(model) == pytest.approx(0.4, abs=1e-3)
    assert not pruner(model, 10, 100)  # before the ramp: nothing to do
    assert pruner(model, 90, 100)
    assert _sparsity(model) == pytest.approx(0.8, abs=1e-3)


def test_check_unchanged_may_shrink_still_catches_revived_weights() -> None:
    model, _ = _problem()
    pk.prune(model, _global(0.5), inplace=True)
    before = snapshot(model)
    pk.prune(model, _global(0.7), inplace=True)
    check_unchanged(model, before, may_shrink=True)
    with pytest.raises(PlanError, match="mask changed"):
        check_unchanged(model, before)
    model[0].weight_mask.fill_(1.0)  # revive everything
    with pytest.raises(PlanError, match="revived"):
        check_unchanged(model, before, may_shrink=True)
