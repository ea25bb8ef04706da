"""Bias correction after Wanda / SparseGPT: the pruned layer keeps the dense mean output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.errors import SpecError
from prunekit.oneshot.calibration import InputStats
from prunekit.oneshot.correction import corrected_bias
from prunekit.specs import spec_from_dict

SPECS = [
    pk.Unstructured(sparsity=0.5, importance="wanda", bias_correction=True),
    pk.Unstructured(sparsity=0.5, importance="sparsegpt", bias_correction=True),
    pk.NM(2, 4, importance="wanda", bias_correction=True),
    pk.NM(2, 4, importance="sparsegpt", bias_correction=True),
]


def _inputs() -> list[torch.Tensor]:
    torch.manual_seed(0)
    offset = torch.linspace(-2.0, 3.0, 16)  # inputs with a non-zero mean: pruning shifts it
    return [torch.randn(32, 16) @ torch.randn(16, 16) * 0.5 + offset for _ in range(3)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{type(s).__name__}-{s.importance}")
def test_corrected_layer_keeps_the_dense_mean_output(spec: pk.Unstructured | pk.NM) -> None:
    layer = nn.Linear(16, 8)
    batches = _inputs()
    x = torch.cat(batches)
    dense_mean = layer(x).mean(0).detach()
    corrected = pk.prune(layer, spec, calibration=batches).model
    uncorrected = pk.prune(layer, _without(spec), calibration=batches).model
    with torch.no_grad():
        assert torch.allclose(corrected(x).mean(0), dense_mean, atol=1e-4)
        assert not torch.allclose(uncorrected(x).mean(0), dense_mean, atol=1e-2)
        # only the bias moved: the weights (and masks) are the uncorrected ones
        assert torch.equal(corrected.weight, uncorrected.weight)
    assert int((corrected.weight == 0).sum()) == 8 * 8


def _without(spec: pk.Unstructured | pk.NM) -> pk.Unstructured | pk.NM:
    fields = spec.to_dict()
    fields["bias_correction"] = False
    result = spec_from_dict(fields)
    assert isinstance(result, (pk.Unstructured, pk.NM))
    return result


def test_corrected_bias_formula() -> None:
    dense = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    pruned = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    bias = torch.tensor([0.5, -0.5])
    mean = torch.tensor([2.0, 10.0])
    # removed: 2.0 * 10 from row 0 and 3.0 * 2 from row 1
    assert torch.equal(corrected_bias(bias, dense, pruned, mean), torch.tensor([20.5, 5.5]))


def test_input_mean_skips_padded_tokens() -> None:
    layer = nn.Linear(4, 2)
    stats = InputStats({"weight": layer}, gram=False)
    x = torch.randn(2, 5, 4)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    x[~mask] = 1e6  # padding: must not count
    stats.token_mask = mask
    layer(x)
    stats.remove()
    assert torch.allclose(stats.mean("weight"), x[mask].double().mean(0))


def test_layers_without_bias_are_pruned_unchanged_otherwise() -> None:
    model = nn.Sequential(nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 4))
    spec = pk.Unstructured(sparsity=0.5, importance="wanda", bias_correction=True)
    result = pk.prune(model, spec, calibration=_inputs())
    plain = pk.prune(model, _without(spec), calibration=_inputs())
    assert result.model[0].bias is None
    assert torch.equal(result.model[0].weight, plain.model[0].weight)
    assert not torch.equal(result.model[2].bias, plain.model[2].bias)


def test_bias_correction_needs_a_calibrated_importance() -> None:
    with pytest.raises(SpecError, match="bias_correction"):
        pk.Unstructured(sparsity=0.5, bias_correction=True)
    with pytest.raises(SpecError, match="bias_correction"):
        pk.NM(2, 4, importance="l1", bias_correction=True)
    with pytest.raises(SpecError, match="True or False"):
        pk.NM(2, 4, importance="wanda", bias_correction="yes")  # type: ignore[arg-type]


def test_spec_round_trips_with_bias_correction() -> None:
    for spec in SPECS:
        assert spec_from_dict(spec.to_dict()) == spec
    assert "bias_correction" not in pk.NM(2, 4).to_dict()  # unset: older plans unchanged
    assert spec_from_dict(pk.NM(2, 4).to_dict()) == pk.NM(2, 4)


def _first_layer_mean(model: nn.Module, name: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean output of one layer over the real (unpadded) tokens of ``inputs``."""
    seen: list[torch.Tensor] = []
    handle = model.get_submodule(name).register_forward_hook(
        lambda _m, _i, out: seen.append(out.detach()))
    with torch.no_grad():
        model(**inputs)
    handle.remove()
    return seen[0][inputs["attention_mask"].bool()].mean(0)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_gpt2_conv1d_first_block_keeps_the_dense_mean(method: str) -> None:
    from hf_models import batch, build

    model = build("gpt2")
    inputs = batch(size=3, length=16)
    spec = pk.Unstructured(sparsity=0.5, importance=method, bias_correction=True)
    result = pk.prune(model, spec, calibration=[inputs])
    name = "transformer.h.0.attn.c_attn"  # Conv1D (transposed weight); block 0 sees dense inputs
    dense_mean = _first_layer_mean(model, name, inputs)
    assert torch.allclose(_first_layer_mean(result.model, name, inputs), dense_mean, atol=1e-4)
    plain = pk.prune(model, _without(spec), calibration=[inputs]).model
    assert not torch.allclose(_first_layer_mean(plain, name, inputs), dense_mean, atol=1e-3)
