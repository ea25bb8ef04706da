"""choose_conv_kernel: which layers it does not time, the rule it applies to the timings it
gets (faked here: tests assert the decision, never a speed), and that the layer it returns
computes what the dense one does; the kernel leaves the user's thread counts alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from prunekit.sparse import conv_choice, kernels
from prunekit.sparse.conv import CSRConv2d
from prunekit.sparse.conv_choice import choose_conv_kernel

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba not installed")


def _pruned(sparsity: float, dtype: torch.dtype = torch.float32, **kwargs) -> nn.Conv2d:
    conv = nn.Conv2d(8, 12, 3, padding=1, dtype=dtype, **kwargs)
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) >= sparsity)
    return conv


def _no_timing(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("timed a layer that should stay dense untimed")

    monkeypatch.setattr(conv_choice, "time_pair", refuse)


def _fake_timings(monkeypatch, dense: list[float], sparse: list[float]) -> list[object]:
    """time_pair runs each call once (their outputs are returned) and reports ``dense`` and
    ``sparse`` seconds."""
    outputs: list[object] = []

    def fake(first, second, device, budget_s=0.2, max_rounds=50):
        outputs.extend([first(), second()])
        return list(dense), list(sparse)

    monkeypatch.setattr(conv_choice, "time_pair", fake)
    return outputs


def test_below_min_sparsity_stays_dense_untimed(monkeypatch):
    _no_timing(monkeypatch)
    choice, module = choose_conv_kernel(_pruned(0.3), (2, 8, 6, 6), min_sparsity=0.5)
    assert (choice.kernel, choice.dense_ms, module) == ("dense", None, None)
    assert "< 50%" in choice.reason


def test_unsupported_layers_stay_dense_untimed(monkeypatch):
    _no_timing(monkeypatch)
    conv = nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")
    with torch.no_grad():
        conv.weight.zero_()
    choice, module = choose_conv_kernel(conv, (2, 8, 6, 6))
    assert choice.kernel == "dense" and module is None
    assert choice.reason.startswith("unsupported: padding_mode='reflect'")


@pytest.mark.parametrize("why", ["no numba", "float64"])
def test_without_a_kernel_for_the_layer_it_stays_dense_untimed(monkeypatch, why):
    _no_timing(monkeypatch)
    if why == "no numba":
        monkeypatch.setattr(kernels, "numba", None)
    conv = _pruned(0.95, torch.float64 if why == "float64" else torch.float32)
    choice, module = choose_conv_kernel(conv, (2, 8, 6, 6))
    assert choice.kernel == "dense" and module is None
    assert choice.reason == "no sparse conv kernel for this device/dtype"


@needs_numba
@pytest.mark.parametrize(
    "dense, sparse, expected",
    [
        ([2.0] * 8, [1.0] * 8, "csr"),  # 2x faster
        ([2.0] * 8, [1.9] * 8, "dense"),  # 1.05x: inside the 10% margin
        ([2.0] * 8, [1.0] * 5 + [3.0] * 3, "dense"),  # fast median, slow tail
    ],
    ids=["wins", "within-margin", "slow-tail"],
)
def test_csr_is_kept_only_when_it_wins_by_the_margin(monkeypatch, dense, sparse, expected):
    conv = _pruned(0.95, bias=True)
    outputs = _fake_timings(monkeypatch, dense, sparse)
    choice, module = choose_conv_kernel(conv, (3, 8, 7, 7), margin=0.1)
    assert choice.kernel == expected
    assert (module is not None) == (expected == "csr")
    assert choice.dense_ms is not None and choice.sparse_ms is not None
    dense_out, sparse_out = outputs
    torch.testing.assert_close(sparse_out, dense_out, rtol=0, atol=1e-5)
    if module is not None:
        assert isinstance(module, CSRConv2d) and "x dense" in choice.reason
        x = torch.randn(3, 8, 7, 7)
        with torch.no_grad():
            torch.testing.assert_close(module(x), conv(x), rtol=0, atol=1e-5)


@needs_numba
def test_a_real_timing_returns_a_consistent_choice():
    conv = _pruned(0.95)
    choice, module = choose_conv_kernel(conv, (2, 8, 6, 6), repeats=5)
    assert choice.kernel in ("csr", "dense")
    assert (module is None) == (choice.kernel == "dense")
    assert choice.dense_ms is not None and choice.dense_ms > 0


@needs_numba
def test_the_conv_kernel_keeps_the_users_thread_counts():
    """A fresh process: the first kernel call starts numba's pool, which would reset torch's
    count; both numba's (3, from NUMBA_NUM_THREADS) and torch's (1) are as before."""
    script = (
        "import numba, torch\n"
        "from prunekit.sparse.conv import CSRConv2d\n"
        "torch.set_num_threads(1)\n"
        "layer = CSRConv2d.from_conv(torch.nn.Conv2d(4, 6, 3, padding=1))\n"
        "with torch.no_grad():\n"
        "    layer(torch.randn(2, 4, 8, 8))\n"
        "print(numba.get_num_threads(), torch.get_num_threads())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env={**os.environ, "NUMBA_NUM_THREADS": "3"})
    assert done.stdout.strip() == "3 1"
