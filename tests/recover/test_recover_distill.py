"""Output distillation: the pruned model moves towards the dense one, structure held fixed."""

from __future__ import annotations

import copy

import pytest
import torch
from tests.recover.toy_task import toy_problem
from torch import nn

import prunekit as pk
from prunekit.errors import SpecError
from prunekit.recover import distill_outputs


def _inputs(count: int = 8, batch: int = 32) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 16, generator=gen) for _ in range(count)]


def _gap(student: nn.Module, teacher: nn.Module, batches: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return sum(float((student(b) - teacher(b)).pow(2).sum(-1).mean()) for b in batches)


@pytest.mark.parametrize("cosine", [True, False])
def test_distillation_closes_the_gap_and_keeps_the_masks(cosine):
    dense, _ = toy_problem()
    dense.train()
    result = pk.prune(copy.deepcopy(dense), pk.Unstructured(sparsity=0.8))
    batches, held_out = _inputs(), _inputs(4)
    before = _gap(result.model, dense, held_out)
    masks = {k: v.clone() for k, v in result.model.state_dict().items() if k.endswith("_mask")}
    dense_state = {k: v.clone() for k, v in dense.state_dict().items()}
    report = distill_outputs(result.model, dense, batches, epochs=3, lr=3e-3, cosine=cosine,
                             progress=False)
    assert report.steps == 24 and report.epochs == 3 and len(report.losses) == 3
    assert report.losses[-1] < report.losses[0]
    assert _gap(result.model, dense, held_out) < 0.5 * before
    after = result.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in masks.items())
    for name, module in result.model.named_modules():
        if hasattr(module, "weight_mask"):
            assert bool((module.weight[~module.weight_mask.bool()] == 0).all()), name
    assert all(torch.equal(dense.state_dict()[k], v) for k, v in dense_state.items())
    assert not result.model.training and dense.training  # the teacher's own mode restored


def test_distillation_of_a_physically_pruned_model_with_a_custom_output():
    dense, _ = toy_problem()
    x = torch.randn(4, 16)
    smaller = pk.prune(copy.deepcopy(dense), pk.Structured(sparsity=0.5), x).model
    hidden = smaller[0].out_features
    batches = [(b,) for b in _inputs()]  # tuple batches: model(*batch)

    def softmax_output(model: nn.Module, batch: tuple[torch.Tensor]) -> torch.Tensor:
        return model(*batch).softmax(-1)

    report = distill_outputs(smaller, dense, batches, outputs=softmax_output, epochs=2,
                             lr=1e-3, progress=False)
    assert report.steps == 16 and smaller[0].out_features == hidden


def test_bad_arguments_are_refused_before_training():
    dense, _ = toy_problem()
    student = copy.deepcopy(dense)
    state = {k: v.clone() for k, v in student.state_dict().items()}
    batches = _inputs(2)
    for kwargs, message in (({"epochs": -1}, "epochs=-1"), ({"lr": 0.0}, "lr=0.0"),
                            ({"lr": float("nan")}, "lr=nan")):
        with pytest.raises(SpecError, match=message):
            distill_outputs(student, dense, batches, progress=False, **kwargs)
    with pytest.raises(SpecError, match="one-pass iterator"):
        distill_outputs(student, dense, iter(batches), progress=False)
    with pytest.raises(SpecError, match="student is the teacher"):
        distill_outputs(dense, dense, batches, progress=False)
    with pytest.raises(SpecError, match="not a tensor"):
        distill_outputs(student, dense, batches, outputs=lambda m, b: m(b).tolist(),
                        progress=False)
    assert all(torch.equal(student.state_dict()[k], v) for k, v in state.items())


def test_distillation_keeps_the_pruned_zeros_of_a_finalized_model():
    dense, _ = toy_problem()
    finalized = pk.finalize(pk.prune(copy.deepcopy(dense), pk.Unstructured(sparsity=0.8)).model)
    zeros = {n: p.detach() == 0 for n, p in finalized.named_parameters() if p.dim() > 1}
    report = distill_outputs(finalized, dense, _inputs(), epochs=2, lr=3e-3, progress=False)
    assert report.losses[-1] < report.losses[0]
    for name, mask in zeros.items():
        assert bool((finalized.get_parameter(name)[mask] == 0).all()), name
