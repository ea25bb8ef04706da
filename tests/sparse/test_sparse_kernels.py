"""The compiled kernels: the CSR product equals dense (torch's kernel runs where it cannot),
the gaps decoder and gaps-to-CSR equal the plain paths for any split across threads."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.sparse import CSRLinear, kernels
from prunekit.sparse.decode import csr_parts, decode_masked_into
from prunekit.sparse.formats import encode

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba not installed")


@pytest.fixture(autouse=True)
def _numba_pool_started_like_the_library_does():
    """Tests below call private kernels directly; starting numba's pool through
    ``_threads`` first keeps torch's thread count as the suite set it."""
    if kernels.available():
        with kernels._threads():
            pass


def _pruned_linear(inp: int, out: int, sparsity: float, bias: bool, dtype: torch.dtype) -> nn.Linear:
    lin = nn.Linear(inp, out, bias=bias, dtype=dtype)
    with torch.no_grad():
        lin.weight.mul_(torch.rand_like(lin.weight) >= sparsity)
        lin.weight[3].zero_()  # an empty row
        lin.weight[5, :7] = 1.0  # a row whose kept count is not a multiple of 4
    return lin


def _count_kernel_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = kernels.csr_linear

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(kernels, "csr_linear", counted)
    return calls


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [kernels.MIN_ROWS, 67])
def test_kernel_matches_dense(monkeypatch, dtype, bias, rows):
    lin = _pruned_linear(70, 37, 0.85, bias, dtype)
    sparse = CSRLinear.from_linear(lin)
    calls = _count_kernel_calls(monkeypatch)
    x = torch.randn(rows, 70, dtype=dtype)
    with torch.no_grad():
        out = sparse(x)
        expected = lin(x)
    assert calls, "the compiled kernel did not run"
    assert out.shape == expected.shape and out.is_contiguous()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(out, expected, **tol)


@needs_numba
def test_kernel_runs_on_leading_dims_and_threads(monkeypatch):
    lin = _pruned_linear(64, 48, 0.9, True, torch.float32)
    sparse = CSRLinear.from_linear(lin)
    calls = _count_kernel_calls(monkeypatch)
    x = torch.randn(4, 20, 64)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                torch.testing.assert_close(sparse(x), lin(x), rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(before)
    assert len(calls) == 2


def test_torch_kernel_below_min_rows_with_gradients_and_without_numba(monkeypatch):
    lin = _pruned_linear(64, 48, 0.9, True, torch.float32)
    sparse = CSRLinear.from_linear(lin)
    calls = _count_kernel_calls(monkeypatch)
    x = torch.randn(kernels.MIN_ROWS - 1, 64)  # too few rows
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), lin(x), rtol=1e-5, atol=1e-5)
    x = torch.randn(64, 64, requires_grad=True)  # a gradient is needed: torch's kernel has one
    sparse(x).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, lin.weight.detach().sum(0).expand(64, 64))
    monkeypatch.setattr(kernels, "numba", None)  # numba not installed
    assert not kernels.available()
    x = torch.randn(64, 64)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), lin(x), rtol=1e-5, atol=1e-5)
    monkeypatch.undo()
    half = CSRLinear.from_linear(lin).to(torch.float16)  # fp16 is not a kernel dtype
    assert not kernels.usable(torch.randn(64, 64, dtype=torch.float16), half.values)
    assert calls == []


def _gaps_case(numel: int, density: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat tensor whose kept entries include long runs of zeros (escape codes), the first
    and the last entry, and a kept weight that is exactly 0."""
    gen = torch.Generator().manual_seed(seed)
    keep = torch.rand(numel, generator=gen) < density
    if numel:
        keep[0] = keep[-1] = True
        keep[numel // 3 : numel // 3 + min(numel // 3, 700)] = False  # a gap over 255
    value = torch.randn(numel, generator=gen, dtype=torch.float64) * keep
    if numel > 5:
        keep[5], value[5] = True, 0.0
    return value, keep


@needs_numba
@pytest.mark.parametrize("numel", [0, 1, 300, 2000, 5000])
@pytest.mark.parametrize("density", [0.002, 0.1, 0.9])
def test_gaps_decoder_writes_every_entry_for_any_thread_split(numel, density):
    value, keep = _gaps_case(numel, density, seed=numel)
    enc = encode(value, "gaps", keep)
    codes, values = enc.parts["gaps"].numpy(), enc.parts["values"]
    for dtype in (torch.float32, torch.float64):
        for shares in (1, 2, 3, 7):
            out = torch.full((numel,), 9.0, dtype=dtype)
            mask = torch.zeros(numel, dtype=torch.bool) | (torch.arange(numel) % 2 == 0)
            kernels._gaps_into(codes, values.to(dtype).numpy(), out.numpy(), mask.numpy(), shares)
            assert torch.equal(out, value.to(dtype)) and torch.equal(mask, keep), (dtype, shares)
            out.fill_(9.0)
            kernels._gaps_into(codes, values.to(dtype).numpy(), out.numpy(), np.empty(0, bool), shares)
            assert torch.equal(out, value.to(dtype))


@needs_numba
@pytest.mark.parametrize("shape", [(1, 1), (9, 20), (40, 3), (7, 600), (300, 4)])
@pytest.mark.parametrize("density", [0.0, 0.003, 0.2])
def test_gaps_to_csr_equals_torch_csr_for_any_thread_split(shape, density):
    gen = torch.Generator().manual_seed(shape[0] * 1000 + shape[1])
    weight = torch.randn(shape, generator=gen) * (torch.rand(shape, generator=gen) < density)
    weight[shape[0] // 2] = 0  # an empty row
    reference = weight.to_sparse_csr()
    codes = encode(weight, "gaps").parts["gaps"].numpy()
    for shares in (1, 2, 3, 7):
        crow = np.full(shape[0] + 1, -5, dtype=np.int32)
        col = np.full(int(np.count_nonzero(codes)), -5, dtype=np.int32)
        kernels._gaps_csr(codes, shape[1], crow, col, shares)
        assert torch.equal(torch.from_numpy(crow).long(), reference.crow_indices()), shares
        assert torch.equal(torch.from_numpy(col).long(), reference.col_indices()), shares


@needs_numba
@pytest.mark.parametrize("mask_dtype", [None, torch.bool, torch.float32])
def test_large_gaps_decode_and_csr_parts_equal_the_numpy_paths(monkeypatch, mask_dtype):
    value, keep = _gaps_case(1 << 20, 0.05, seed=1)  # large enough to use every thread
    value, keep = value.float().reshape(1024, 1024), keep.reshape(1024, 1024)
    enc = encode(value, "gaps", keep)

    def decoded() -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, ...]]:
        out = torch.empty(1024, 1024)
        mask = None if mask_dtype is None else torch.empty(1024, 1024, dtype=mask_dtype)
        decode_masked_into(enc, out, mask)
        parts = csr_parts(encode(value, "gaps"))
        assert parts is not None
        return out, mask, parts

    compiled = decoded()
    monkeypatch.setattr(kernels, "numba", None)
    plain = decoded()
    assert torch.equal(compiled[0], value) and torch.equal(plain[0], value)
    if mask_dtype is not None:
        assert torch.equal(compiled[1], keep.to(mask_dtype))
        assert torch.equal(plain[1], keep.to(mask_dtype))
    assert all(torch.equal(a, b) for a, b in zip(compiled[2], plain[2], strict=True))


KERNEL_CALLS = {  # each public entry point: the CSR product, the gaps decoder, gaps to CSR
    "product": "CSRLinear.from_linear(torch.nn.Linear(64, 64))(torch.randn(64, 64))",
    "decode": "decode(encode(torch.zeros(8, 8), 'gaps', torch.eye(8) > 0))",
    "csr": "csr_parts(encode(torch.eye(8), 'gaps'))",
}


@needs_numba
def test_the_first_kernel_call_keeps_torchs_thread_count():
    """Starting numba's OpenMP pool resets the runtime torch shares; a fresh process shows it,
    for each public entry point (the CSR product, the gaps decoder, gaps to CSR)."""
    calls = KERNEL_CALLS
    for name, call in calls.items():
        script = (
            "import torch\n"
            "from prunekit.sparse import CSRLinear\n"
            "from prunekit.sparse.decode import csr_parts, decode\n"
            "from prunekit.sparse.formats import encode\n"
            "torch.set_num_threads(1)\n"
            f"with torch.no_grad():\n    {call}\n"
            "print(torch.get_num_threads())\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True)
        assert done.stdout.strip() == "1", name


@needs_numba
@pytest.mark.parametrize("user_setting", [None, 2])
def test_kernel_calls_leave_numbas_thread_count_as_the_user_had_it(user_setting):
    """The kernels run on torch's thread count (1 here), and numba's own count is put back
    after every call: its default (3, from NUMBA_NUM_THREADS) if the user never set it,
    else what they set. A fresh process, so the pool starts inside the first call or before."""
    setup = "" if user_setting is None else (
        f"numba.set_num_threads({user_setting})\ntorch.set_num_threads(1)\n")
    expected = "3" if user_setting is None else str(user_setting)
    script = (
        "import numba, torch\n"
        "from prunekit.sparse import CSRLinear\n"
        "from prunekit.sparse.decode import csr_parts, decode\n"
        "from prunekit.sparse.formats import encode\n"
        "torch.set_num_threads(1)\n"
        f"{setup}"
        "with torch.no_grad():\n"
        + "".join(f"    {call}\n    print(numba.get_num_threads(), torch.get_num_threads())\n"
                  for call in KERNEL_CALLS.values())
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env={**os.environ, "NUMBA_NUM_THREADS": "3"})
    counts = dict(zip(KERNEL_CALLS, done.stdout.strip().splitlines(), strict=True))
    assert counts == {name: f"{expected} 1" for name in KERNEL_CALLS}


@needs_numba
def test_kernels_compile_without_a_writable_cache():
    """Where numba finds nowhere to write its cache, the kernels still compile (uncached)."""
    script = (
        "import numba, torch\n"
        "plain = numba.njit\n"
        "def refuse_cache(*args, **kwargs):\n"
        "    if kwargs.get('cache'):\n"
        "        raise RuntimeError('cannot cache function: no locator available')\n"
        "    return plain(*args, **kwargs)\n"
        "numba.njit = refuse_cache\n"
        "from prunekit.sparse import CSRLinear, kernels\n"
        "lin = torch.nn.Linear(64, 48)\n"
        "x = torch.randn(64, 64)\n"
        "with torch.no_grad():\n"
        "    torch.testing.assert_close(CSRLinear.from_linear(lin)(x), lin(x))\n"
        "print(kernels.available())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "True"
