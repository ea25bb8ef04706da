"""Recovery fine-tuning: learns, keeps masks/zeros/shapes fixed, is deterministic, distils."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn
from toy_task import toy_problem

import prunekit as pk
from prunekit.apply.masks import effective_weight
from prunekit.data import TensorLoader
from prunekit.errors import PlanError, SpecError
from prunekit.recover import (
    RecoveryConfig,
    RecoveryStep,
    check_unchanged,
    cosine_factor,
    distillation_loss,
    finetune,
    recalibrate_batchnorm,
    snapshot,
)


def _problem(seed: int = 0) -> tuple[nn.Module, TensorLoader]:
    return toy_problem(seed)


def _accuracy(model: nn.Module, loader: TensorLoader) -> float:
    with torch.no_grad():
        return float(torch.cat([(model(x).argmax(-1) == y).float() for x, y in loader]).mean())


def test_finetune_recovers_accuracy_and_keeps_pruned_weights_zero() -> None:
    model, loader = _problem()
    finetune(model, loader, RecoveryConfig(epochs=5, lr=0.1), progress=False)
    dense_acc = _accuracy(model, loader)
    pruned = pk.prune(model, pk.Unstructured(sparsity=0.8, scope="global")).model
    masks = {n: m.weight_mask.bool().clone() for n, m in pruned.named_modules()
             if hasattr(m, "weight_mask")}
    pruned_acc = _accuracy(pruned, loader)
    report = finetune(pruned, loader, RecoveryConfig(epochs=5, lr=0.05), progress=False)
    assert report.steps == 5 * len(loader) and len(report.losses) == 5
    assert _accuracy(pruned, loader) > pruned_acc
    assert dense_acc > 0.8
    for name, mask in masks.items():
        weight = effective_weight(pruned.get_submodule(name))
        assert torch.equal(pruned.get_submodule(name).weight_mask.bool(), mask)
        assert bool((weight[~mask] == 0).all()), f"{name}: a pruned weight came back"


def test_same_seed_gives_identical_weights() -> None:
    results = []
    for _ in range(2):
        model, loader = _problem(seed=1)
        finetune(model, loader, RecoveryConfig(epochs=1, lr=0.05, seed=7), progress=False)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(results[0], results[1])


def test_max_steps_stops_early() -> None:
    model, loader = _problem()
    report = finetune(model, loader, RecoveryConfig(epochs=3, max_steps=5), progress=False)
    assert report.steps == 5


def test_step_drops_into_a_user_loop_with_distillation() -> None:
    teacher, loader = _problem()
    finetune(teacher, loader, RecoveryConfig(epochs=3, lr=0.1), progress=False)
    student = pk.prune(teacher, pk.NM(n_keep=2, m=4)).model
    config = RecoveryConfig(epochs=2, lr=0.05, distill=True, alpha=1.0)
    step = RecoveryStep(student, config, total_steps=2 * len(loader), teacher=teacher)
    losses = [step(x, y) for _ in range(2) for x, y in loader]
    assert step.steps_done == 2 * len(loader)
    assert sum(losses[-4:]) < sum(losses[:4])  # the KL to the teacher shrinks


def test_distillation_loss_is_zero_for_equal_logits_and_positive_otherwise() -> None:
    a = torch.randn(8, 5)
    assert float(distillation_loss(a, a, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(a, torch.randn(8, 5), 4.0)) > 0


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    assert cosine_factor(0, 100, 10) == pytest.approx(0.1)
    assert cosine_factor(10, 100, 10) == pytest.approx(1.0)
    assert cosine_factor(100, 100, 10) == pytest.approx(0.0)


def test_check_unchanged_names_a_revived_weight_and_a_changed_shape() -> None:
    model, _ = _problem()
    pruned = pk.prune(model, pk.Unstructured(sparsity=0.5)).model
    before = snapshot(pruned)
    with torch.no_grad():
        pruned[0].weight_mask.fill_(1.0)  # a mask that grew back
    with pytest.raises(PlanError, match="0.weight: mask changed"):
        check_unchanged(pruned, before)
    other = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    with pytest.raises(PlanError, match="shape"):
        check_unchanged(other, snapshot(model))


def test_bad_settings_are_rejected_with_every_problem_named() -> None:
    with pytest.raises(SpecError) as info:
        RecoveryConfig(lr=0, alpha=2.0)
    assert "lr=0" in info.value.message and "alpha=2.0" in info.value.message


def test_batchnorm_recalibration_gives_the_exact_statistics_of_the_batches() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    batches = [(torch.randn(16, 4) * 3 + 1, torch.zeros(16)) for _ in range(3)]
    weight = model[0].weight.detach().clone()
    used = recalibrate_batchnorm(model, batches, max_batches=2)
    features = torch.cat([model[0](x) for x, _ in batches[:2]]).detach()
    assert used == 2 and not model.training
    assert torch.allclose(model[1].running_mean, features.mean(0), atol=1e-5)
    assert model[1].momentum == 0.1  # restored
    assert torch.equal(model[0].weight, weight)


def _zeros(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() == 0 for n, p in model.named_parameters() if p.dim() > 1}


def _finalized(model: nn.Module) -> nn.Module:
    return pk.finalize(pk.prune(model, pk.Unstructured(sparsity=0.8)).model)


def test_finetune_keeps_the_pruned_zeros_of_a_finalized_model(tmp_path) -> None:
    dense, loader = _problem()
    finalized = _finalized(dense)
    saved = pk.save(finalized, tmp_path / "finalized")
    for model in (finalized, pk.load(saved, build=lambda: toy_problem()[0])):
        zeros = _zeros(model)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        keys = sorted(model.state_dict())
        finetune(model, loader, RecoveryConfig(epochs=2, lr=0.05), progress=False)
        for name, param in model.named_parameters():
            assert not bool(torch.equal(param, before[name])), f"{name} did not train"
            if name in zeros:
                assert bool((param[zeros[name]] == 0).all()), f"{name}: a pruned zero came back"
        assert sorted(model.state_dict()) == keys  # still finalized: no masks were left on it


def test_keep_zeros_false_trains_every_weight_of_a_finalized_model() -> None:
    dense, loader = _problem()
    model = _finalized(dense)
    zeros = _zeros(model)
    finetune(model, loader, RecoveryConfig(epochs=1, lr=0.05), progress=False, keep_zeros=False)
    assert all(bool((model.get_parameter(n)[z] != 0).any()) for n, z in zeros.items())


def test_a_weight_pruned_whole_is_held_with_a_warning_naming_it(caplog) -> None:
    # global pruning can empty a layer; a zero-initialised weight looks the same, so the
    # warning says how to train it (keep_zeros=False)
    model, loader = _problem()
    with torch.no_grad():
        model[2].weight.zero_()
    with caplog.at_level(logging.WARNING, logger="prunekit.recover.zeros"):
        finetune(model, loader, RecoveryConfig(epochs=1, lr=0.05), progress=False)
    assert "2.weight is entirely zero" in caplog.text and "keep_zeros=False" in caplog.text
    assert bool((model[2].weight == 0).all())
    finetune(model, loader, RecoveryConfig(epochs=1, lr=0.05), progress=False, keep_zeros=False)
    assert bool((model[2].weight != 0).all())


def test_step_keeps_the_zeros_of_a_finalized_model_in_a_user_loop() -> None:
    dense, loader = _problem()
    model = _finalized(dense)
    zeros = _zeros(model)
    step = RecoveryStep(model, RecoveryConfig(lr=0.05), total_steps=len(loader))
    for x, y in loader:
        step(x, y)
    for name, mask in zeros.items():
        assert bool((model.get_parameter(name)[mask] == 0).all()), name


def test_distill_without_a_teacher_is_refused_before_training() -> None:
    model, loader = _problem()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    config = RecoveryConfig(epochs=1, distill=True)
    with pytest.raises(SpecError, match="teacher"):
        finetune(model, loader, config, progress=False)
    with pytest.raises(SpecError, match="teacher"):
        RecoveryStep(model, config, total_steps=4)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_a_teacher_without_distill_is_refused_before_training() -> None:
    model, loader = _problem()
    teacher = copy.deepcopy(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    config = RecoveryConfig(epochs=1)  # distill=False: the teacher would never be used
    with pytest.raises(SpecError, match="never uses it"):
        finetune(model, loader, config, teacher=teacher, progress=False)
    with pytest.raises(SpecError, match="never uses it"):
        RecoveryStep(model, config, total_steps=4, teacher=teacher)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_low_precision_masters_keep_their_precision_across_pruner_steps() -> None:
    # a pruner acting before a step may write weights: what it wrote is adopted, and the
    # float32 master values it left alone keep the precision bf16 cannot hold
    from prunekit.recover.precision import MasterWeights

    weight = nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16))
    master = MasterWeights([weight])
    with torch.no_grad():
        master[weight].add_(torch.tensor([1e-3, 1e-3, 1e-3]))  # below bf16's step at 1-3
    master.weights_out()
    assert torch.equal(weight, torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16))
    with torch.no_grad():
        weight[2] = 0.0  # the pruner's write
    master.refresh()
    torch.testing.assert_close(master[weight], torch.tensor([1.001, 2.001, 0.0]))
