"""fp16 steps are loss-scaled: small gradients survive, non-finite ones skip the step."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.recover.precision import MasterWeights


def _linear(dtype: torch.dtype) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(4, 2).to(dtype)


def _step(layer: nn.Linear, factor: float) -> tuple[MasterWeights, bool]:
    master = MasterWeights(layer.parameters())
    optimizer = torch.optim.SGD([master[p] for p in layer.parameters()], lr=1.0)
    x = torch.full((3, 4), 1e-4, dtype=layer.weight.dtype)
    loss = layer(x).float().sum() * factor
    return master, master.backward_and_step(loss, optimizer)


def test_gradients_below_fp16s_range_still_update_the_weights() -> None:
    """d loss / d w = 3e-9: zero in fp16 without scaling; the master gets it unscaled."""
    layer = _linear(torch.float16)
    master, stepped = _step(layer, 1e-5)
    assert stepped and master.scaler.is_enabled()
    grad = master[layer.weight].grad
    assert grad is not None and grad.dtype == torch.float32
    torch.testing.assert_close(grad, torch.full_like(grad, 3e-9), rtol=0.01, atol=0.0)


def test_overflowing_gradients_skip_the_step_and_halve_the_scale() -> None:
    layer = _linear(torch.float16)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    master, stepped = _step(layer, 1e4)  # scaled by 65536: inf in fp16
    assert not stepped
    assert master.scaler.get_scale() == 2.0 ** 15
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in before.items())
    assert all(bool(torch.isfinite(p).all()) for p in layer.parameters())


def test_bf16_and_fp32_are_not_scaled() -> None:
    for dtype in (torch.bfloat16, torch.float32):
        layer = _linear(dtype)
        master, stepped = _step(layer, 1.0)
        assert stepped and not master.scaler.is_enabled()
