"""The data-parallel helpers in one process: no process group, nothing split or summed, and
``distributed=True`` refused; the hashes ranks compare see values, not object addresses."""

from __future__ import annotations

import dist_cases
import pytest
import torch
import torch.distributed as dist
from torch import nn

import prunekit as pk
from prunekit.distributed import (
    active,
    calibration_shard,
    digest_batches,
    digest_model,
    single_process,
    sum_across_ranks,
    unwrap,
)
from prunekit.errors import SpecError
from prunekit.importance.gradients import summed_gradients
from prunekit.oneshot.layers import OneShotSettings
from prunekit.oneshot.walk import calibrate_and_prune


def test_distributed_true_without_a_process_group_is_refused_before_anything_runs() -> None:
    assert not dist.is_initialized()
    with pytest.raises(SpecError, match="no process group is initialized"):
        calibration_shard(4, distributed=True)
    model = dist_cases.stack()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = OneShotSettings(method="wanda", sparsity={"head.weight": 0.5}, nm=None)
    with pytest.raises(SpecError, match="distributed=True"):
        calibrate_and_prune(model, ["head.weight"], dist_cases.calibration(), settings, [],
                            distributed=True)
    with pytest.raises(SpecError, match="distributed=True"):
        summed_gradients(model, dict(model.named_parameters()), dist_cases.calibration(),
                         lambda m, b, i: m(b).pow(2).mean(), distributed=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_without_a_group_nothing_is_split_and_sums_are_the_local_tensors() -> None:
    assert calibration_shard(4) is None and not active()
    with single_process():
        assert not active()
    local = {"a": torch.tensor([1.0, 2.0])}
    summed = sum_across_ranks(local, {"a": (2,), "b": (2, 2)})
    assert torch.equal(summed["a"], local["a"].double())
    assert torch.equal(summed["b"], torch.zeros(2, 2, dtype=torch.float64))


class _Opaque:
    """An object whose default repr holds its address, different in every process."""


def test_batch_hashes_compare_values_and_structure_not_addresses() -> None:
    def batch(value: float) -> dict[str, object]:
        return {"x": torch.full((2, 3), value), "extra": _Opaque(), "n": 3}

    assert digest_batches([batch(1.0)]) == digest_batches([batch(1.0)])
    assert digest_batches([batch(1.0)]) != digest_batches([batch(2.0)])
    assert digest_batches([batch(1.0)]) != digest_batches([batch(1.0), batch(1.0)])
    assert digest_batches([torch.ones(2, 3)]) != digest_batches([torch.ones(3, 2)])


def test_model_hashes_tell_differently_seeded_models_apart() -> None:
    assert digest_model(dist_cases.stack(seed=0)) == digest_model(dist_cases.stack(seed=0))
    assert digest_model(dist_cases.stack(seed=0)) != digest_model(dist_cases.stack(seed=1))


def test_unwrap_reaches_the_module_inside_wrappers() -> None:
    layer = nn.Linear(2, 2)
    assert unwrap(nn.DataParallel(layer)) is layer
    assert unwrap(layer) is layer


def test_prune_refuses_a_wrapper_and_save_writes_the_module_inside(tmp_path) -> None:
    model = dist_cases.mlp()
    wrapped = nn.DataParallel(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(SpecError, match="DataParallel wrapper") as caught:
        pk.prune(wrapped, pk.Unstructured(sparsity=0.5))
    assert "model.module" in caught.value.hint
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    result = pk.prune(model, pk.Unstructured(sparsity=0.5))
    folder = pk.save(nn.DataParallel(result.model), tmp_path / "wrapped")
    loaded = pk.load(folder, dist_cases.mlp)
    x = torch.randn(3, 8)
    assert torch.equal(loaded(x), result.model(x))
    assert loaded.state_dict().keys() == result.model.state_dict().keys()  # no "module."
