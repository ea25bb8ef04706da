"""CSRConv2d and its compiled kernel: outputs equal the dense convolution for every
stride / padding / dilation / groups combination, kernel shape, batch, bias and dtype, on
random and pruned weights; unsupported convolutions are refused; the dense fallback keeps
gradients and runs without numba; the module copies, pickles and converts like a layer.

Oracle: ``F.conv2d`` in float32 on the same (bf16-representable, for bf16) values. float32
outputs agree within 1e-5 of the output's scale; bf16 outputs are that float32 result
rounded once, so they agree within one bf16 step (at most 2**-7 relative) plus the float32
noise.
"""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import UnsupportedModelError
from prunekit.sparse import conv_kernels, kernels
from prunekit.sparse.conv import CSRConv2d, to_conv, unsupported_reason

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba not installed")

# name: (in, out, height, width, kernel_size, stride, padding, dilation, groups)
CASES = {
    "1x1": (8, 12, 7, 9, 1, 1, 0, 1, 1),
    "1x1-stride2": (8, 12, 9, 8, 1, 2, 0, 1, 1),
    "1x1-padded": (8, 6, 5, 6, 1, 1, 1, 1, 1),
    "3x3": (8, 12, 9, 7, 3, 1, 1, 1, 1),
    "3x3-unpadded": (8, 12, 9, 7, 3, 1, 0, 1, 1),
    "3x3-stride2": (8, 12, 9, 10, 3, 2, 1, 1, 1),
    "3x3-dilation2": (8, 12, 9, 10, 3, 1, 2, 2, 1),
    "3x3-stride2-dilation2": (8, 12, 11, 10, 3, 2, 2, 2, 1),
    "3x3-stride3-pad2": (6, 5, 11, 13, 3, 3, 2, 1, 1),
    "5x5-stride2": (4, 6, 12, 11, 5, 2, 2, 1, 1),
    "rect-3x2-stride(2,1)-dilation(1,2)": (6, 10, 9, 9, (3, 2), (2, 1), (1, 0), (1, 2), 1),
    "rect-1x5": (6, 4, 5, 12, (1, 5), 1, (0, 2), 1, 1),
    "same-even-4x4-dilation(1,2)": (6, 4, 8, 9, 4, 1, "same", (1, 2), 1),
    "same-3x3": (6, 4, 8, 9, 3, 1, "same", 1, 1),
    "valid-3x3": (6, 4, 8, 9, 3, 1, "valid", 1, 1),
    "padding-wider-than-reach": (4, 5, 6, 5, 3, 1, 3, 1, 1),
    "output-1x1": (6, 5, 3, 3, 3, 1, 0, 1, 1),
    "groups2": (8, 12, 9, 7, 3, 1, 1, 1, 2),
    "groups4-stride2": (8, 8, 9, 7, 3, 2, 1, 1, 4),
    "depthwise": (8, 8, 9, 7, 3, 1, 1, 1, 8),
    "depthwise-multiplier2-stride2": (8, 16, 9, 7, 3, 2, 1, 1, 8),
}
WEIGHTS = ("random", "pruned-90", "pruned-95")
DTYPES = (torch.float32, torch.bfloat16)


@pytest.fixture(autouse=True)
def _numba_pool_started_like_the_library_does():
    """Starting numba's pool through ``_threads`` first keeps torch's thread count as the
    suite set it (tests below may call the kernel directly)."""
    if kernels.available():
        with kernels._threads():
            pass


def _conv(case: str, bias: bool, weights: str, dtype: torch.dtype) -> nn.Conv2d:
    c_in, c_out, _, _, kernel, stride, padding, dilation, groups = CASES[case]
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias=bias)
    with torch.no_grad():
        if weights != "random":
            keep = 1 - int(weights.split("-")[1]) / 100
            w = conv.weight
            threshold = w.abs().flatten().kthvalue(max(1, int(w.numel() * (1 - keep)))).values
            w.mul_(w.abs() > threshold)
            w[0].zero_()  # an output channel with no kept weight
    return conv.to(dtype)


def _input(case: str, batch: int, dtype: torch.dtype) -> torch.Tensor:
    c_in, _, height, width = CASES[case][:4]
    return torch.randn(batch, c_in, height, width).to(dtype)


def _expected(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The float32 convolution of the same values, in the input's dtype."""
    bias = None if conv.bias is None else conv.bias.float()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "same" with an even kernel: a copy
        out = F.conv2d(
            x.float(), conv.weight.float(), bias, conv.stride, conv.padding, conv.dilation,
            conv.groups,
        )
    return out.to(x.dtype)


def _assert_matches(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = max(1.0, float(expected.float().abs().max()))
    rtol = 2.0**-7 if expected.dtype == torch.bfloat16 else 0.0
    torch.testing.assert_close(
        actual.float(), expected.float(), rtol=rtol, atol=1e-5 * scale
    )


def _count_kernel_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = conv_kernels.run

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(conv_kernels, "run", counted)
    return calls


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("batch", [1, 11])
@pytest.mark.parametrize("case", CASES)
def test_kernel_equals_dense(monkeypatch, case, batch, bias, weights, dtype):
    conv = _conv(case, bias, weights, dtype)
    sparse = CSRConv2d.from_conv(conv)
    x = _input(case, batch, dtype)
    calls = _count_kernel_calls(monkeypatch)
    with torch.no_grad():
        out = sparse(x)
    assert calls, "the compiled kernel did not run"
    _assert_matches(out, _expected(conv, x))


@needs_numba
@pytest.mark.parametrize("block", [1, 2, 4, 8])
@pytest.mark.parametrize(
    "case", ["1x1", "1x1-stride2", "3x3", "3x3-stride2-dilation2", "rect-1x5", "groups2"]
)
def test_every_sample_interleaving_equals_dense(case, block):
    """Batch 11 leaves a partial last block for every interleaving width."""
    conv = _conv(case, True, "pruned-90", torch.float32)
    sparse = CSRConv2d.from_conv(conv)
    x = _input(case, 11, torch.float32)
    out = conv_kernels.csr_conv2d(
        x, sparse.crow, sparse.col, sparse.values, sparse.bias, sparse.spec(), block
    )
    _assert_matches(out, _expected(conv, x))


@needs_numba
def test_all_zero_weight_gives_the_bias():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        x = torch.randn(3, 4, 5, 5)
        _assert_matches(CSRConv2d.from_conv(conv)(x), conv(x))


def test_unbatched_input_and_dense_weight_round_trip():
    conv = _conv("3x3-stride2", True, "pruned-90", torch.float32)
    sparse = CSRConv2d.from_conv(conv)
    assert torch.equal(sparse.dense_weight(), conv.weight.detach())
    assert sparse.nnz == int(torch.count_nonzero(conv.weight))
    x = _input("3x3-stride2", 1, torch.float32)[0]
    with torch.no_grad():
        _assert_matches(sparse(x), conv(x))
    rebuilt = to_conv(sparse)
    assert isinstance(rebuilt, nn.Conv2d)
    assert torch.equal(rebuilt.weight, conv.weight) and torch.equal(rebuilt.bias, conv.bias)


@pytest.mark.parametrize(
    "module, reason",
    [
        (nn.ConvTranspose2d(4, 4, 3), "transposed"),
        (nn.Conv1d(4, 4, 3), "not a 2-D convolution"),
        (nn.Conv3d(4, 4, 3), "not a 2-D convolution"),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"), "padding_mode='circular'"),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="replicate"), "padding_mode='replicate'"),
    ],
    ids=["transposed", "conv1d", "conv3d", "reflect", "circular", "replicate"],
)
def test_unsupported_convolutions_are_refused_by_name(module, reason):
    assert reason in (unsupported_reason(module) or "")
    with pytest.raises(UnsupportedModelError, match=type(module).__name__):
        CSRConv2d.from_conv(module)


def test_a_subclass_with_its_own_forward_is_refused():
    class Scaled(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    assert "overrides forward" in (unsupported_reason(Scaled(4, 4, 3)) or "")
    with pytest.raises(UnsupportedModelError, match="Scaled"):
        CSRConv2d.from_conv(Scaled(4, 4, 3))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gradients_take_the_dense_path_and_equal_dense(monkeypatch, dtype):
    conv = _conv("3x3-stride2", True, "pruned-90", dtype)
    sparse = CSRConv2d.from_conv(conv)
    x = _input("3x3-stride2", 3, dtype).requires_grad_()
    calls = _count_kernel_calls(monkeypatch)
    out = sparse(x)
    assert not calls
    out.float().square().sum().backward()
    grad_x, grad_bias = x.grad.clone(), sparse.bias.grad.clone()
    x.grad = None
    conv(x).float().square().sum().backward()
    _assert_matches(out.detach(), conv(x).detach())
    torch.testing.assert_close(grad_x, x.grad)
    torch.testing.assert_close(grad_bias, conv.bias.grad)


@needs_numba
def test_a_bias_that_needs_a_gradient_takes_the_dense_path(monkeypatch):
    sparse = CSRConv2d.from_conv(_conv("3x3", True, "pruned-90", torch.float32))
    calls = _count_kernel_calls(monkeypatch)
    sparse(_input("3x3", 2, torch.float32)).sum().backward()
    assert not calls and sparse.bias.grad is not None
    with torch.no_grad():
        sparse(_input("3x3", 2, torch.float32))
    assert calls


def test_without_numba_the_dense_fallback_runs(monkeypatch):
    conv = _conv("3x3-stride2-dilation2", True, "pruned-95", torch.float32)
    sparse = CSRConv2d.from_conv(conv)
    monkeypatch.setattr(kernels, "numba", None)  # numba not installed
    calls = _count_kernel_calls(monkeypatch)
    x = _input("3x3-stride2-dilation2", 4, torch.float32)
    with torch.no_grad():
        _assert_matches(sparse(x), conv(x))
    assert not calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16], ids=str)
def test_other_dtypes_take_the_dense_path(monkeypatch, dtype):
    conv = _conv("3x3", True, "pruned-90", dtype)
    sparse = CSRConv2d.from_conv(conv)
    calls = _count_kernel_calls(monkeypatch)
    x = _input("3x3", 2, dtype)
    with torch.no_grad():
        out = sparse(x)
        torch.testing.assert_close(out, conv(x))
    assert not calls


def test_a_wrong_input_raises_torchs_error():
    sparse = CSRConv2d.from_conv(nn.Conv2d(4, 6, 3))
    with torch.no_grad(), pytest.raises(RuntimeError):
        sparse(torch.randn(2, 5, 8, 8))  # 5 channels, not 4
    with torch.no_grad(), pytest.raises(RuntimeError):
        sparse(torch.randn(2, 4, 2, 2))  # smaller than the kernel


def test_an_empty_batch_gives_an_empty_output():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    with torch.no_grad():
        out = CSRConv2d.from_conv(conv)(torch.randn(0, 4, 8, 8))
    assert out.shape == (0, 6, 8, 8)


def test_deepcopy_pickle_and_state_dict_round_trip():
    conv = _conv("groups2", True, "pruned-90", torch.float32)
    sparse = CSRConv2d.from_conv(conv)
    x = _input("groups2", 5, torch.float32)
    with torch.no_grad():
        expected = sparse(x)
        for twin in (copy.deepcopy(sparse), pickle.loads(pickle.dumps(sparse))):
            assert torch.equal(twin(x), expected)
            assert twin.col.dtype == twin.crow.dtype == torch.int32
    state = sparse.state_dict()
    assert set(state) == {"crow", "col", "values", "bias"}
    fresh = CSRConv2d(
        state["crow"], state["col"], state["values"], conv.in_channels, conv.kernel_size,
        conv.stride, conv.padding, conv.dilation, conv.groups, state["bias"],
    )
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)


def test_converting_the_module_to_bf16_converts_the_weight():
    conv = _conv("3x3", True, "pruned-90", torch.float32)
    sparse = CSRConv2d.from_conv(conv).to(torch.bfloat16)
    assert sparse.values.dtype == torch.bfloat16 and sparse.crow.dtype == torch.int32
    x = _input("3x3", 3, torch.bfloat16)
    with torch.no_grad():
        _assert_matches(sparse(x), _expected(conv.to(torch.bfloat16), x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_the_dense_fallback_runs():
    conv = _conv("3x3-stride2", True, "pruned-90", torch.float32).cuda()
    sparse = CSRConv2d.from_conv(conv)
    assert sparse.values.is_cuda
    x = _input("3x3-stride2", 3, torch.float32).cuda()
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), conv(x))
        torch.testing.assert_close(sparse.cpu()(x.cpu()), conv.cpu()(x.cpu()))


@needs_numba
def test_a_changed_weight_or_input_shape_is_never_computed_with_a_stale_plan(monkeypatch):
    """The kernel's per-shape plan is reused while nothing changed, and rebuilt after an
    in-place change, a loaded state dict, a new values tensor, or another input shape."""
    conv = _conv("3x3-stride2", True, "pruned-90", torch.float32)
    sparse = CSRConv2d.from_conv(conv)
    plans: list[int] = []
    original = conv_kernels.plan

    def counted(*args, **kwargs):
        plans.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(conv_kernels, "plan", counted)
    x, wider = _input("3x3-stride2", 3, torch.float32), torch.randn(2, 8, 12, 14)
    with torch.no_grad():
        for _ in range(2):
            _assert_matches(sparse(x), conv(x))
        assert len(plans) == 1
        _assert_matches(sparse(wider), conv(wider))
        sparse.values.mul_(2)
        conv.weight.mul_(2)
        _assert_matches(sparse(x), conv(x))
        conv.weight.mul_(-1)
        sparse.load_state_dict(CSRConv2d.from_conv(conv).state_dict())
        _assert_matches(sparse(x), conv(x))
        conv.bias.add_(1)
        sparse.bias.add_(1)
        _assert_matches(sparse(x), conv(x))
        sparse.values = sparse.values * 3
        conv.weight.mul_(3)
        _assert_matches(sparse(x), conv(x))
    assert len(plans) == 6
    assert pickle.loads(pickle.dumps(sparse))._plans == {}  # derived data is not pickled


@needs_numba
@pytest.mark.parametrize("case", ["3x3", "1x1", "3x3-stride2-dilation2", "depthwise"])
def test_two_threads_compute_the_same(case):
    """Tasks (sample blocks x row chunks x output-channel blocks) split across threads; a
    batch of 1 splits only output channels, a batch of 11 samples too."""
    conv = _conv(case, True, "pruned-90", torch.float32)
    sparse = CSRConv2d.from_conv(conv)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.no_grad():
            for batch in (1, 11):
                x = _input(case, batch, torch.float32)
                _assert_matches(sparse(x), conv(x))
    finally:
        torch.set_num_threads(before)


def test_the_docstring_example_runs():
    import doctest

    from prunekit.sparse import conv as conv_module

    failed, attempted = doctest.testmod(conv_module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failed == 0
