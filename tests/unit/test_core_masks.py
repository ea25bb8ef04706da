"""The masked end state: exact masking, training with masks held fixed, copy, pickle, finalize."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.apply.masks import apply_mask, effective_weight, existing_mask, masked_modules


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.conv = nn.Conv1d(1, 4, 3)
        self.fc2 = nn.Linear(56, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x)).unsqueeze(1)  # (N, 1, 16)
        return self.fc2(self.conv(h).flatten(1))  # (N, 4*14) -> (N, 3)


def pruned_net(sparsity: float = 0.7) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    dense = Net()
    result = pk.prune(dense, pk.Unstructured(sparsity=sparsity))
    return dense, result.model


def test_masked_weight_equals_orig_times_mask_exactly() -> None:
    _, model = pruned_net()
    x = torch.randn(5, 12)
    model(x)
    for _, module, _ in masked_modules(model):
        expected = module.weight_orig * module.weight_mask
        assert torch.equal(module.weight, expected)
        assert torch.equal(effective_weight(module), expected)
        assert module.weight_mask.dtype == torch.bool  # a quarter of a float mask's memory
        assert module.weight.dtype == module.weight_orig.dtype


def test_all_ones_mask_changes_nothing() -> None:
    torch.manual_seed(0)
    dense = Net()
    masked = copy.deepcopy(dense)
    for name in ("fc1", "conv", "fc2"):
        module = masked.get_submodule(name)
        apply_mask(module, torch.ones_like(module.weight, dtype=torch.bool))
    x = torch.randn(5, 12)
    assert torch.equal(masked(x), dense(x))
    for name in ("fc1", "conv", "fc2"):
        assert torch.equal(masked.get_submodule(name).weight, dense.get_submodule(name).weight)


def test_masked_model_output_equals_dense_model_with_zeroed_weights() -> None:
    dense, model = pruned_net()
    oracle = copy.deepcopy(dense)
    with torch.no_grad():
        for name in ("fc1", "conv", "fc2"):
            mask = existing_mask(model.get_submodule(name))
            oracle.get_submodule(name).weight.mul_(mask)
    x = torch.randn(5, 12)
    torch.testing.assert_close(model(x), oracle(x), rtol=0, atol=0)


OPTIMIZERS = {
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_masks_survive_ten_optimizer_steps(make_optimizer) -> None:
    _, model = pruned_net()
    masks = {name: existing_mask(model.get_submodule(name)).clone() for name in ("fc1", "conv", "fc2")}
    seen: list[tuple[str, torch.Tensor]] = []

    def record(module: nn.Module, inputs: object) -> None:  # reads the weight forward uses
        seen.append((names[module], module.weight.detach().clone()))

    names = {model.get_submodule(n): n for n in masks}
    for module in names:
        module.register_forward_pre_hook(record)
    optimizer = make_optimizer(model.parameters())
    torch.manual_seed(1)
    trained_before = {n: model.get_submodule(n).weight_orig.detach().clone() for n in masks}
    for _ in range(10):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(torch.randn(8, 12)), torch.randint(0, 3, (8,)))
        loss.backward()
        for name, mask in masks.items():  # no gradient reaches a pruned weight
            assert (model.get_submodule(name).weight_orig.grad[~mask] == 0).all()
        optimizer.step()
    assert len(seen) == 30
    for name, weight in seen:  # pruned weights were exactly zero in every forward
        assert (weight[~masks[name]] == 0).all()
    for name, mask in masks.items():  # kept weights did train; masks did not move
        module = model.get_submodule(name)
        assert not torch.equal(module.weight_orig[mask], trained_before[name][mask])
        assert torch.equal(module.weight_mask.bool(), mask)
    x = torch.randn(4, 12)
    out = model(x)
    pk.finalize(model)
    for name, mask in masks.items():
        assert (model.get_submodule(name).weight[~mask] == 0).all()
    torch.testing.assert_close(model(x), out, rtol=0, atol=0)


def test_finalize_restores_keys_keeps_outputs_and_parameter_identity() -> None:
    dense, model = pruned_net()
    trained = {n: model.get_submodule(n).weight_orig for n in ("fc1", "conv", "fc2")}
    x = torch.randn(5, 12)
    out = model(x)
    assert pk.finalize(model) is model
    assert list(model.state_dict()) == list(dense.state_dict())  # same keys, same order
    torch.testing.assert_close(model(x), out, rtol=0, atol=0)
    for name, param in trained.items():
        module = model.get_submodule(name)
        assert module.weight is param and isinstance(module.weight, nn.Parameter)
        assert not masked_modules(model)
        assert not module._forward_pre_hooks and not module._forward_hooks


def test_finalized_state_dict_loads_into_a_fresh_dense_model() -> None:
    _, model = pruned_net()
    x = torch.randn(3, 12)
    out = model(x)
    fresh = Net()
    fresh.load_state_dict(pk.finalize(model).state_dict(), strict=True)
    torch.testing.assert_close(fresh(x), out, rtol=0, atol=0)


def test_optimizer_built_before_finalize_still_trains_the_weight() -> None:
    _, model = pruned_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pk.finalize(model)
    before = model.fc1.weight.detach().clone()
    model(torch.randn(2, 12)).sum().backward()
    optimizer.step()
    assert not torch.equal(model.fc1.weight, before)  # the optimizer holds the same Parameter


@pytest.mark.parametrize("with_grad_forward", [False, True])
def test_deepcopy_and_pickle_of_a_masked_model(with_grad_forward: bool) -> None:
    _, model = pruned_net()
    x = torch.randn(3, 12)
    if with_grad_forward:
        model(x).sum().backward()  # leaves grads behind
    expected = model(x).detach()
    clones = [copy.deepcopy(model), pickle.loads(pickle.dumps(model))]
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    clones.append(torch.load(buffer, weights_only=False))
    for clone in clones:
        torch.testing.assert_close(clone(x), expected, rtol=0, atol=0)
        assert len(masked_modules(clone)) == 3
        pk.finalize(clone)
        torch.testing.assert_close(clone(x), expected, rtol=0, atol=0)


def test_masked_model_still_copies_after_a_forward_that_failed() -> None:
    _, model = pruned_net()
    with pytest.raises(RuntimeError):
        model(torch.randn(3, 5))  # wrong width: fc1 fails after reading its masked weight
    clone = pickle.loads(pickle.dumps(copy.deepcopy(model)))
    x = torch.randn(2, 12)
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)


def test_masked_state_dict_is_weights_only_loadable() -> None:
    _, model = pruned_net()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert {"fc1.weight_orig", "fc1.weight_mask", "fc1.bias"} <= set(state)


def test_pruned_model_moves_dtype_and_stays_masked() -> None:
    _, model = pruned_net()
    model = model.double()
    x = torch.randn(3, 12, dtype=torch.float64)
    out = model(x)
    assert out.dtype == torch.float64
    assert (model.fc1.weight[~existing_mask(model.fc1)] == 0).all()


# --- parents that read a child's weight directly ---------------------------------------------

def encoder() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


def test_multihead_attention_out_proj_is_pruned_correctly_in_eval_and_training() -> None:
    dense = encoder()
    result = pk.prune(dense, pk.Unstructured(sparsity=0.6), torch.randn(2, 5, 16))
    model = result.model
    out_proj = model.layers[0].self_attn.out_proj
    assert "layers.0.self_attn.out_proj" in [r.name for r in result.summary().rows]
    mask = existing_mask(out_proj)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(2, 5, 16)).square().mean().backward()
        grad = out_proj.weight_orig.grad
        assert grad is not None and grad[mask].abs().sum() > 0  # kept weights do train
        assert (grad[~mask] == 0).all()
        optimizer.step()
    # eval + no_grad takes torch's fast path, which reads the weights directly
    model.eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        fast = model(x)
    oracle = copy.deepcopy(model)
    pk.finalize(oracle)
    oracle.train()  # the slow path, on plain baked weights
    with torch.no_grad():
        slow = oracle(x)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    assert (oracle.layers[0].self_attn.out_proj.weight[~mask] == 0).all()
    assert list(oracle.state_dict()) == list(dense.state_dict())
    assert not any(m._forward_pre_hooks for m in oracle.modules())
    clone = pickle.loads(pickle.dumps(model))  # masked children inside parents pickle too
    with torch.no_grad():
        torch.testing.assert_close(clone(x), fast, rtol=0, atol=0)


def test_bare_multihead_attention_out_proj_masked_in_forward() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    q = torch.randn(2, 3, 8)
    result = pk.prune(mha, pk.Unstructured(sparsity=0.5), (q, q, q))
    pruned = result.model
    oracle = copy.deepcopy(pruned)
    pk.finalize(oracle)
    torch.testing.assert_close(pruned(q, q, q)[0], oracle(q, q, q)[0], rtol=0, atol=0)
    with torch.no_grad():  # after changing weight_orig, the parent still sees the fresh value
        pruned.out_proj.weight_orig.add_(1.0)
        oracle.out_proj.weight.add_(existing_mask(pruned.out_proj).float())
    torch.testing.assert_close(pruned(q, q, q)[0], oracle(q, q, q)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_weights_prune_with_exact_counts(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = Net().to(dtype)
    result = pk.prune(model, pk.Unstructured(sparsity=0.75, scope="global"))
    masked = result.model
    assert masked.fc1.weight_orig.dtype == dtype and masked.fc1.weight_mask.dtype == torch.bool
    assert masked.fc1.weight.dtype == dtype
    total = sum(m.numel() for m in result.plan.masks.values())
    assert sum(int((~m).sum()) for m in result.plan.masks.values()) == round(0.75 * total)
    pk.finalize(masked)
    assert masked.fc1.weight.dtype == dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pruning_on_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    cpu = Net()
    gpu = copy.deepcopy(cpu).cuda()
    for spec in (pk.Unstructured(sparsity=0.6, scope="global"), pk.NM(2, 4)):
        ignore = ["conv"] if isinstance(spec, pk.NM) else []
        on_cpu = pk.prune(cpu, spec, ignore=ignore).plan.masks
        on_gpu = pk.prune(gpu, spec, ignore=ignore)
        for key, mask in on_cpu.items():
            assert on_gpu.plan.masks[key].device.type == "cpu"
            assert int((~on_gpu.plan.masks[key]).sum()) == int((~mask).sum())
        x = torch.randn(3, 12, device="cuda")
        out = on_gpu.model(x)
        assert out.device.type == "cuda"
        pk.finalize(on_gpu.model)
        torch.testing.assert_close(on_gpu.model(x), out)
