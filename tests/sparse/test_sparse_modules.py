"""Sparse Linear layers and to_sparse: same outputs as the masked model, honest dispatch."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.errors import SpecError
from prunekit.sparse import CSRLinear, to_linear, to_sparse
from prunekit.sparse.dispatch import choose_kernel, is_two_four


def _pruned_linear(inp: int, out: int, sparsity: float, bias: bool = True) -> nn.Linear:
    lin = nn.Linear(inp, out, bias=bias)
    with torch.no_grad():
        lin.weight.mul_(torch.rand_like(lin.weight) >= sparsity)
    return lin


@pytest.mark.parametrize("bias", [True, False])
def test_csr_linear_matches_dense_for_any_leading_dims(bias):
    lin = _pruned_linear(48, 24, 0.9, bias)
    sparse = CSRLinear.from_linear(lin)
    for x in (torch.randn(5, 48), torch.randn(2, 3, 48), torch.randn(48)):
        torch.testing.assert_close(sparse(x), lin(x), rtol=1e-5, atol=1e-6)
    assert torch.equal(sparse.dense_weight(), lin.weight.detach())
    assert torch.equal(to_linear(sparse).weight, lin.weight)


def test_csr_linear_copies_pickles_and_changes_dtype():
    sparse = CSRLinear.from_linear(_pruned_linear(32, 16, 0.8))
    x = torch.randn(4, 32)
    expected = sparse(x)
    for clone in (copy.deepcopy(sparse), pickle.loads(pickle.dumps(sparse))):
        assert torch.equal(clone(x), expected)
    assert sparse.to(torch.float64)(x.double()).dtype == torch.float64


def _masked_result(name: str, sparsity: float = 0.9):
    model = pk.zoo.build(name)
    x = pk.zoo.example_inputs(name, 8)
    return pk.prune(model, pk.Unstructured(sparsity=sparsity), x), x


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_to_sparse_outputs_equal_the_masked_model(name):
    result, x = _masked_result(name)
    for kernel in ("csr", "auto"):
        conversion = to_sparse(result, x, kernel=kernel)
        with torch.no_grad():
            torch.testing.assert_close(conversion.model(x), result.model(x), rtol=1e-4, atol=1e-5)
    forced = to_sparse(result, x, kernel="csr")
    linears = [r for r in forced.layers if r.kind in ("Linear", "CSRLinear")]
    assert linears and all(r.kernel == "csr" for r in linears)
    assert all(isinstance(forced.model.get_submodule(r.name), CSRLinear) for r in linears)


def test_to_sparse_leaves_the_input_alone_and_converts_convolutions_too():
    result, x = _masked_result("lenet")
    before = {k: v.clone() for k, v in result.model.state_dict().items()}
    conversion = to_sparse(result, x, kernel="csr")
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in before.items())
    convs = [r for r in conversion.layers if r.kind == "Conv2d"]
    assert convs and all(r.kernel == "csr" and r.reason == "requested" for r in convs)
    assert pk.apply.masks.masked_modules(conversion.model) == []


def test_auto_dispatch_records_why_and_only_picks_measured_wins():
    model = nn.Sequential(_pruned_linear(256, 256, 0.3), nn.ReLU(), _pruned_linear(256, 256, 0.97))
    conversion = to_sparse(model, batch_size=16)
    low, high = conversion.layers
    assert low.kernel == "dense" and low.dense_ms is None and "< 50%" in low.reason
    assert high.dense_ms is not None and high.sparse_ms is not None
    if high.kernel == "csr":
        assert high.dense_ms / high.sparse_ms >= 1.1
    never = to_sparse(model, batch_size=16, margin=1000.0)
    assert never.kernels == {}


def test_choose_kernel_below_min_sparsity_does_not_time():
    choice, module = choose_kernel(_pruned_linear(64, 64, 0.2), rows=4)
    assert choice.kernel == "dense" and module is None and choice.dense_ms is None


def test_to_sparse_rejects_bad_arguments_before_touching_anything():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(SpecError, match="unknown kernel"):
        to_sparse(model, kernel="bsr")
    with pytest.raises(SpecError, match="batch_size"):
        to_sparse(model, batch_size=0)
    with pytest.raises(SpecError, match="not nn.Linear"):
        to_sparse(model, kernel={"nope": "csr"})
    assert isinstance(model[0], nn.Linear)


def test_two_four_pattern_check():
    w = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0]])
    assert is_two_four(w)
    w[0, 1] = 5.0
    assert not is_two_four(w)


def test_two_four_kernel_is_never_offered_on_cpu():
    lin = _pruned_linear(64, 64, 0.0).half()
    with torch.no_grad():
        lin.weight.mul_(pk.select.nm.nm_mask(lin.weight.abs().float(), 2, 4))
    conversion = to_sparse(nn.Sequential(lin), kernel="2:4")
    assert conversion.layers[0].kernel == "dense"
    assert "unavailable" in conversion.layers[0].reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="2:4 semi-structured kernels need CUDA")
def test_two_four_semi_structured_on_cuda_matches_dense():
    lin = nn.Linear(512, 512).half().cuda()
    with torch.no_grad():
        lin.weight.mul_(pk.select.nm.nm_mask(lin.weight.abs().float(), 2, 4))
    x = torch.randn(128, 512, device="cuda", dtype=torch.float16)
    conversion = to_sparse(nn.Sequential(lin), kernel="2:4")
    assert conversion.layers[0].kernel == "2:4"
    torch.testing.assert_close(conversion.model(x), lin(x), rtol=1e-2, atol=1e-2)


def test_cautious_speedup_rejects_a_kernel_with_a_slow_tail():
    from prunekit.sparse.dispatch import cautious_speedup

    dense = [1.0] * 10
    steady = [0.5] * 10
    tail = [0.3] * 6 + [20.0] * 4  # fast median, but 40% of calls stall
    assert cautious_speedup(dense, steady) == 2.0
    assert cautious_speedup(dense, tail) < 1.0


def test_attention_projection_read_by_its_parent_stays_dense():
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    model = nn.Sequential(layer, nn.Linear(32, 8))
    x = torch.randn(2, 5, 32)
    result = pk.prune(model, pk.Unstructured(sparsity=0.9), x)
    conversion = to_sparse(result, x, kernel="csr")
    rows = {r.name: r for r in conversion.layers}
    for name in ("0.self_attn.out_proj", "0.linear1", "0.linear2"):
        assert rows[name].kernel == "dense" and "reads the weight" in rows[name].reason
    assert rows["1"].kernel == "csr"
    conversion.model.eval()
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(conversion.model(x), result.model(x), rtol=1e-4, atol=1e-5)


def test_a_bare_linear_model_is_converted():
    conversion = to_sparse(_pruned_linear(32, 8, 0.9), kernel="csr")
    assert isinstance(conversion.model, CSRLinear)


@pytest.mark.parametrize("rows", [4, 32, 64])
def test_csr_linear_bias_gets_its_gradient_at_any_row_count(rows):
    # Fine-tuning a converted model trains its biases: the input needs no gradient there,
    # and from 32 rows on the compiled kernel (no backward) must not swallow the bias's.
    lin = _pruned_linear(48, 24, 0.9)
    sparse = CSRLinear.from_linear(lin)
    x = torch.randn(rows, 48)
    sparse(x).pow(2).sum().backward()
    lin(x).pow(2).sum().backward()
    assert sparse.bias.grad is not None
    torch.testing.assert_close(sparse.bias.grad, lin.bias.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_csr_linear_runs_in_half_precision_on_cpu(dtype):
    # torch has no CPU CSR product in bf16 / fp16: the layer multiplies in float32 there,
    # so it agrees with the dense layer to the dtype's rounding and trains
    lin = _pruned_linear(64, 32, 0.8).to(dtype)
    sparse = CSRLinear.from_linear(lin)
    assert to_sparse(nn.Sequential(lin), kernel="csr").kernels == {"0": "csr"}
    x = torch.randn(5, 64, dtype=dtype, requires_grad=True)
    y = sparse(x)
    assert y.dtype == dtype
    torch.testing.assert_close(y, lin(x), rtol=0.02, atol=0.02)
    y.float().pow(2).sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype and sparse.bias.grad.dtype == dtype
