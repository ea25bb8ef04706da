"""Wanda and SparseGPT on nn.Conv2d, against the equivalent Linear over unfolded inputs.

A convolution is the matrix product of its (out, C*kh*kw) weight with the unfolded input
patches (one token per output position); pruning the conv must give what pruning that
Linear on those tokens gives.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import prunekit as pk
from prunekit.errors import ShapeError, TargetError
from prunekit.select.nm import is_nm
from prunekit.select.unstructured import removal_count

CONV_CASES = [  # (kernel, stride, padding, dilation)
    (3, 1, 1, 1),
    (3, 2, 1, 1),
    (3, 1, 2, 2),
    ((3, 1), (2, 1), (1, 0), 1),
    (1, 1, 0, 1),
    (3, 1, "same", 1),
]


def _conv(kernel, stride, padding, dilation, c_in: int = 8, c_out: int = 12) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation)


def _padding(conv: nn.Conv2d) -> tuple[int, int]:
    if conv.padding == "same":
        return tuple((d * (k - 1)) // 2 for d, k in zip(conv.dilation, conv.kernel_size, strict=True))
    return conv.padding  # type: ignore[return-value]


def _tokens(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """F.unfold(x) as (positions of every image, C*kh*kw), the weight.view(O, -1) order."""
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=_padding(conv),
                    stride=conv.stride)  # (n, C*kh*kw, positions)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _equivalent_linear(conv: nn.Conv2d) -> nn.Linear:
    weight = conv.weight.detach().reshape(conv.out_channels, -1)  # weight.view(O, -1)
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    return linear


def _channel_fastest(conv: nn.Conv2d) -> torch.Tensor:
    """Column permutation from the F.unfold order (C, kh, kw) to (kh, kw, C), the column
    order SparseGPT processes a conv in (so N:M groups are runs of input channels)."""
    c, (kh, kw) = conv.in_channels, conv.kernel_size
    return torch.arange(c * kh * kw).reshape(c, kh, kw).permute(1, 2, 0).reshape(-1)


def _batches(c_in: int = 8) -> list[torch.Tensor]:
    return [torch.randn(3, c_in, 11, 9) for _ in range(2)]


def _conv_and_linear(conv: nn.Conv2d, spec: pk.Unstructured, order: torch.Tensor | None
                     ) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The pruned conv, and the mask and weight of the equivalent Linear pruned over the
    conv's unfolded tokens (columns taken in ``order``, if given), in the conv's shape."""
    batches = _batches()
    pruned = pk.prune(nn.Sequential(conv), spec, calibration=batches).model[0]
    linear = _equivalent_linear(conv)
    columns = torch.arange(linear.in_features) if order is None else order
    with torch.no_grad():
        linear.weight.copy_(linear.weight[:, columns])
    tokens = [_tokens(conv, x)[:, columns] for x in batches]
    reference = pk.prune(nn.Sequential(linear), spec, calibration=tokens).model[0]
    back = torch.empty_like(columns)
    back[columns] = torch.arange(columns.numel())
    shape = conv.weight.shape
    return (pruned, reference.weight_mask[:, back].reshape(shape),
            reference.weight.detach()[:, back].reshape(shape))


@pytest.mark.parametrize("case", CONV_CASES)
def test_wanda_on_conv_equals_wanda_on_unfolded_linear(case) -> None:
    spec = pk.Unstructured(sparsity=0.6, importance="wanda")
    pruned, mask, _ = _conv_and_linear(_conv(*case), spec, order=None)
    assert torch.equal(pruned.weight_mask, mask)


@pytest.mark.parametrize("case", CONV_CASES)
def test_sparsegpt_on_conv_equals_sparsegpt_on_unfolded_linear(case) -> None:
    conv = _conv(*case)
    spec = pk.Unstructured(sparsity=0.5, importance="sparsegpt")
    pruned, mask, expected = _conv_and_linear(conv, spec, order=_channel_fastest(conv))
    assert torch.equal(pruned.weight_mask, mask)
    assert torch.allclose(pruned.weight.detach(), expected, atol=1e-5, rtol=0)
    assert pruned.weight.detach().ne(conv.weight.detach()).any()  # reconstructed, not masked


def _layer_error(conv: nn.Conv2d, weight: torch.Tensor, batches: list[torch.Tensor]) -> float:
    return sum(float((conv(x) - F.conv2d(x, weight, conv.bias, conv.stride, conv.padding,
                                          conv.dilation)).pow(2).sum()) for x in batches)


def test_sparsegpt_reconstructs_a_conv_better_than_magnitude() -> None:
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())  # real-ish inputs:
    images = [F.interpolate(torch.randn(4, 3, 6, 6), size=(16, 16), mode="bilinear")
              for _ in range(3)]  # smooth images through a conv + ReLU (correlated)
    with torch.no_grad():
        batches = [features(x) for x in images]
    conv = nn.Conv2d(16, 24, 3, padding=1)
    errors = {}
    for importance in ("sparsegpt", "l1"):
        spec = pk.Unstructured(sparsity=0.7, importance=importance)
        data = batches if importance == "sparsegpt" else None
        result = pk.prune(nn.Sequential(conv), spec, calibration=data)
        pruned = result.model[0]
        assert int((pruned.weight == 0).sum()) == removal_count(conv.weight.numel(), 0.7)
        with torch.no_grad():
            errors[importance] = _layer_error(conv, pruned.weight, batches)
    assert errors["sparsegpt"] < 0.5 * errors["l1"]


def _expected_zeros(weight: torch.Tensor, method: str, sparsity: float) -> int:
    """Zeros Wanda (per output row) or SparseGPT (per 128-column block) leave."""
    rows, width = weight.shape[0], weight[0].numel()
    if method == "wanda":
        return rows * removal_count(width, sparsity)
    return sum(removal_count(rows * min(128, width - s), sparsity)
               for s in range(0, width, 128))


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_fmnist_resnet_end_to_end(method: str, tmp_path: Path) -> None:
    model = pk.zoo.build("fmnist_resnet").eval()
    batches = [torch.randn(4, 1, 28, 28) for _ in range(2)]
    result = pk.prune(model, pk.Unstructured(sparsity=0.8, importance=method),
                      calibration=batches)
    assert result.plan.skipped == {}
    pruned = result.model
    convs = [m for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(convs) == 16 and all(hasattr(m, "weight_mask") for m in convs)
    for m in convs:
        assert int((m.weight == 0).sum()) == _expected_zeros(m.weight, method, 0.8)
    x = torch.randn(3, 1, 28, 28)
    pruned.train()
    pruned(x).sum().backward()
    assert all(m.weight_orig.grad is not None for m in convs)
    pruned.eval()
    folder = pk.save(result, tmp_path / method)
    loaded = pk.load(folder, build=lambda: pk.zoo.build("fmnist_resnet")).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(("conv", "reason"), [
    (nn.Conv2d(8, 8, 3, groups=8), "depthwise"),
    (nn.Conv2d(8, 8, 3, groups=2), "grouped convolution"),
    (nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
    (nn.Conv2d(8, 8, 2, padding="same"), "unevenly"),
])
def test_uncovered_convs_stay_dense_with_reason(conv: nn.Conv2d, reason: str) -> None:
    model = nn.Sequential(conv, nn.Flatten(), nn.LazyLinear(4))
    batches = _batches()
    model(batches[0])
    before = conv.weight.detach().clone()
    result = pk.prune(model, pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
                      calibration=batches)
    assert reason in result.plan.skipped["0"]
    assert torch.equal(result.model[0].weight, before)
    assert int((result.model[2].weight == 0).sum()) > 0


def test_only_uncovered_convs_is_a_target_error_before_any_change() -> None:
    model = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8))
    before = model[0].weight.detach().clone()
    with pytest.raises(TargetError, match="depthwise"):
        pk.prune(model, pk.Unstructured(sparsity=0.5, importance="wanda"),
                 calibration=_batches(), inplace=True)
    assert torch.equal(model[0].weight, before) and not hasattr(model[0], "weight_mask")


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_nm_on_conv_groups_input_channels(method: str) -> None:
    conv = _conv(3, 1, 1, 1)
    result = pk.prune(nn.Sequential(conv), pk.NM(2, 4, importance=method),
                      calibration=_batches())
    mask = result.model[0].weight_mask
    assert is_nm(mask, 2, 4, input_dim=1) and int(mask.sum()) == mask.numel() // 2


def test_nm_on_conv_with_channels_not_divisible_is_a_shape_error() -> None:
    model = nn.Sequential(nn.Conv2d(6, 8, 3))
    with pytest.raises(ShapeError, match="divisible by 4"):
        pk.prune(model, pk.NM(2, 4, importance="wanda"), calibration=_batches(6),
                 inplace=True)
    assert not hasattr(model[0], "weight_mask")
