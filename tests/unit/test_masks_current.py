"""A masked weight is current whenever it is read, not only inside a forward.

After an optimizer step, a dtype or device move, or a direct write to ``weight_orig``,
reading ``module.weight`` gives ``weight_orig * weight_mask`` exactly, with no forward in
between. Modules that read a child's weight without calling the child train it like the
child's own forward does.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.apply.masks import (
    apply_mask,
    effective_weight,
    existing_mask,
    masked_modules,
    original_class,
)


def masked_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    return pk.prune(model, pk.Unstructured(sparsity=0.5)).model


def assert_current(module: nn.Module) -> None:
    """``module.weight`` is exactly ``weight_orig * weight_mask``: values, dtype, device."""
    expected = module.weight_orig.detach() * module.weight_mask
    weight = module.weight
    assert weight.dtype == module.weight_orig.dtype
    assert weight.device == module.weight_orig.device
    assert torch.equal(weight.detach(), expected)


def test_weight_is_current_after_an_optimizer_step_without_a_forward() -> None:
    model = masked_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.randn(4, 6)).square().sum().backward()
    before = model[0].weight.detach().clone()
    optimizer.step()  # changes weight_orig in place; no forward runs afterwards
    assert not torch.equal(model[0].weight, before)
    for _, module, _ in masked_modules(model):
        assert_current(module)
        assert torch.equal(effective_weight(module), module.weight.detach())
        assert (module.weight[~existing_mask(module)] == 0).all()


def test_weight_is_current_after_writing_weight_orig() -> None:
    model = masked_mlp()
    with torch.no_grad():
        model[2].weight_orig.fill_(2.0)
    assert torch.equal(model[2].weight, 2.0 * model[2].weight_mask)


@pytest.mark.parametrize(
    "move",
    [
        lambda m: m.half(),
        lambda m: m.bfloat16(),
        lambda m: m.double(),
        lambda m: m.to(torch.float16),
        lambda m: m.to("meta"),  # a device move that needs no accelerator
    ],
    ids=["half", "bfloat16", "double", "to-float16", "to-meta"],
)
def test_weight_follows_dtype_and_device_moves_without_a_forward(move) -> None:
    model = move(masked_mlp())
    for _, module, _ in masked_modules(model):
        assert module.weight.dtype == module.weight_orig.dtype
        assert module.weight.device == module.weight_orig.device
        assert module.weight_mask.dtype == torch.bool
        if module.weight.device.type != "meta":
            assert_current(module)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_weight_follows_a_move_to_cuda_and_back() -> None:
    model = masked_mlp().cuda()
    for _, module, _ in masked_modules(model):
        assert module.weight.device.type == "cuda"
        assert_current(module)
    model.cpu()
    for _, module, _ in masked_modules(model):
        assert module.weight.device.type == "cpu"
        assert_current(module)


class ReadsChildWeight(nn.Module):
    """A parent that uses its child's weight without calling the child."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.proj.weight.t() + self.proj.bias


def test_a_parent_reading_a_childs_weight_sees_it_masked_and_trains_it() -> None:
    torch.manual_seed(0)
    model = ReadsChildWeight()
    mask = torch.rand(4, 5) > 0.5
    apply_mask(model.proj, mask)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        x = torch.randn(6, 5)
        optimizer.zero_grad()
        out = model(x)
        oracle = x @ (model.proj.weight_orig.detach() * mask).t() + model.proj.bias.detach()
        torch.testing.assert_close(out, oracle, rtol=0, atol=0)
        out.square().sum().backward()
        grad = model.proj.weight_orig.grad
        assert grad is not None and (grad[~mask] == 0).all() and grad[mask].abs().sum() > 0
        optimizer.step()


def test_masked_module_keeps_its_class_name_and_finalize_restores_the_class() -> None:
    model = masked_mlp()
    assert isinstance(model[0], nn.Linear) and type(model[0]).__name__ == "Linear"
    assert repr(model[0]) == "Linear(in_features=6, out_features=8, bias=True)"
    assert original_class(model[0]) is nn.Linear and original_class(model[1]) is nn.ReLU
    pk.finalize(model)
    assert type(model[0]) is nn.Linear and type(model[2]) is nn.Linear


def test_a_masked_root_module_copies_pickles_and_finalizes() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(6, 4)
    pk.prune(layer, pk.Unstructured(sparsity=0.5), inplace=True)
    x = torch.randn(3, 6)
    expected = layer(x).detach()
    assert masked_modules(copy.copy(layer))[0][2] == "weight"  # shares layer's tensors
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert masked_modules(clone) == [("", clone, "weight")]
        torch.testing.assert_close(clone(x), expected, rtol=0, atol=0)
        with torch.no_grad():
            clone.weight_orig.add_(1.0)  # each copy is current on its own
        assert_current(clone)
    pk.finalize(layer)
    assert type(layer) is nn.Linear
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)


def test_assigning_a_tensor_to_a_masked_weight_is_refused() -> None:
    model = masked_mlp()
    with pytest.raises(AttributeError, match="weight_orig"):
        model[0].weight = torch.zeros(8, 6)
    with pytest.raises(AttributeError, match="weight_orig"):
        model[0].weight = nn.Parameter(torch.zeros(8, 6))
    model[0].some_flag = True  # other attributes are unaffected
    assert model[0].some_flag is True


def test_finalize_takes_a_prune_result() -> None:
    torch.manual_seed(0)
    result = pk.prune(nn.Sequential(nn.Linear(6, 8), nn.ReLU()), pk.Unstructured(sparsity=0.5))
    x = torch.randn(3, 6)
    expected = result.model(x).detach()
    assert pk.finalize(result) is result.model
    assert not masked_modules(result.model) and type(result.model[0]) is nn.Linear
    torch.testing.assert_close(result.model(x), expected, rtol=0, atol=0)
    with pytest.raises(pk.SpecError, match="PruneResult, got dict"):
        pk.finalize({"0.weight": torch.zeros(8, 6)})
