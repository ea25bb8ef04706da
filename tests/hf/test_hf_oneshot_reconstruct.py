"""SparseGPT with reconstruct="dense": each layer reproduces the unpruned model's output."""

from __future__ import annotations

import pytest
import torch
from hf_models import FAMILIES, batch, build, logits
from torch import nn

import prunekit as pk
from prunekit.errors import SpecError
from prunekit.oneshot.calibration import BlockInput
from prunekit.oneshot.correction import corrected_bias
from prunekit.oneshot.paired import call_stages
from prunekit.oneshot.reconstruct import dense_target_weight
from prunekit.specs import spec_from_dict

DENSE_SPECS = [
    pk.Unstructured(sparsity=0.5, importance="sparsegpt", reconstruct="dense"),
    pk.NM(2, 4, importance="sparsegpt", reconstruct="dense", bias_correction=True),
]


def _weight(model: nn.Module, key: str) -> torch.Tensor:
    """The (masked) weight a pruned model computes with."""
    weight = model.get_submodule(key.rpartition(".")[0]).weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _calibration() -> list[dict[str, torch.Tensor]]:
    return [batch(seed=s, size=4, length=16) for s in range(6)]


def test_without_drift_the_target_is_the_weight_itself() -> None:
    torch.manual_seed(0)
    w, x = torch.randn(8, 16), torch.randn(200, 16).double()
    for ridge in (1e-6, 0.5, 100.0):
        assert torch.allclose(dense_target_weight(w, x.T @ x, x.T @ x, ridge), w.double(),
                              atol=1e-9)


def test_dense_target_is_the_least_squares_fit_of_the_dense_outputs() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 16).double()
    xd = torch.randn(500, 16).double()
    xp = xd + 0.3 * torch.randn(500, 16).double()  # inputs drifted by earlier pruning
    exact = torch.linalg.lstsq(xp, xd @ w.T).solution.T  # argmin ||xp W*^T - xd W^T||
    fitted = dense_target_weight(w, xp.T @ xp, xp.T @ xd, ridge=1e-9)
    assert torch.allclose(fitted, exact, atol=1e-6)
    assert not torch.allclose(exact, w, atol=0.05)
    heavy = dense_target_weight(w, xp.T @ xp, xp.T @ xd, ridge=1e6)  # the ridge pulls to W
    assert torch.allclose(heavy, w, atol=1e-4)


def test_corrected_bias_towards_the_dense_mean_input() -> None:
    dense = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    pruned = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    bias = torch.tensor([0.5, -0.5])
    mean, dense_mean = torch.tensor([2.0, 10.0]), torch.tensor([1.0, 4.0])
    # dense outputs at the dense mean: [9, -1]; pruned outputs at the pruned mean: [2, -10]
    expected = torch.tensor([0.5 + 9 - 2, -0.5 - 1 + 10])
    assert torch.equal(corrected_bias(bias, dense, pruned, mean, dense_mean), expected)


def test_stages_follow_the_call_order_and_share_an_input() -> None:
    model = build("bert")
    block = model.encoder.layer[0]
    names = ["attention.self.query", "attention.self.key", "attention.self.value",
             "attention.output.dense", "intermediate.dense", "output.dense"]
    modules = {f"{n}.weight": block.get_submodule(n) for n in reversed(names)}
    hidden = torch.randn(2, 5, 32)
    stages, once_each = call_stages(block, modules, BlockInput((hidden,), {}, None))
    assert stages == [[f"{n}.weight" for n in names[:3]]] + [[f"{n}.weight"] for n in names[3:]]
    assert once_each


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("spec", DENSE_SPECS, ids=lambda s: type(s).__name__)
def test_dense_reconstruction_prunes_every_architecture(
    family: str, spec: pk.Unstructured | pk.NM
) -> None:
    model = build(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = pk.prune(model, spec, calibration=_calibration())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # a copy
    assert result.plan.masks
    for key, mask in result.plan.masks.items():
        weight = _weight(result.model, key)
        assert int((~mask).sum()) == mask.numel() // 2
        assert torch.all(weight[~mask] == 0)
    inputs = batch(seed=99)
    out = logits(result.model, inputs)
    assert out.shape == logits(model, inputs).shape and torch.isfinite(out).all()
    loss = result.model(**inputs).logits.sum() if family != "bert" else \
        result.model(**inputs).last_hidden_state.sum()
    loss.backward()
    assert spec_from_dict(result.plan.spec) == spec


def test_a_single_pruned_layer_is_reconstructed_as_with_its_own_target() -> None:
    """Nothing before it was pruned, so its unpruned-model inputs are its own inputs."""
    model = build("bert")
    keep = "encoder.layer.1.attention.output.dense"
    ignore = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != keep]
    own = pk.prune(model, pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
                   calibration=_calibration(), ignore=ignore)
    dense = pk.prune(model, DENSE_SPECS[0], calibration=_calibration(), ignore=ignore)
    key = f"{keep}.weight"
    assert torch.equal(own.plan.masks[key], dense.plan.masks[key])
    assert torch.allclose(_weight(own.model, key), _weight(dense.model, key), atol=1e-6)


def test_later_layers_correct_the_drift_of_earlier_ones() -> None:
    """On the calibration data, the pruned model's output is closer to the dense one."""
    model = build("bert", layers=4)
    calibration = [batch(seed=s, size=8, length=24) for s in range(12)]
    errors = {}
    for reconstruct in ("layer", "dense"):
        spec = pk.Unstructured(sparsity=0.5, importance="sparsegpt", reconstruct=reconstruct)
        pruned = pk.prune(model, spec, calibration=calibration).model
        errors[reconstruct] = sum(float((logits(pruned, b) - logits(model, b)).pow(2).sum())
                                  for b in calibration)
    assert errors["dense"] < 0.7 * errors["layer"], errors  # measured: 0.43x


def test_reconstruct_is_validated_and_round_trips() -> None:
    with pytest.raises(SpecError, match="only SparseGPT"):
        pk.Unstructured(sparsity=0.5, importance="wanda", reconstruct="dense")
    with pytest.raises(SpecError, match="only SparseGPT"):
        pk.NM(2, 4, reconstruct="dense")
    with pytest.raises(SpecError, match="unknown reconstruct"):
        pk.Unstructured(sparsity=0.5, importance="sparsegpt", reconstruct="model")
    for spec in DENSE_SPECS:
        assert spec_from_dict(spec.to_dict()) == spec
    assert "reconstruct" not in pk.Unstructured(sparsity=0.5).to_dict()  # older plans unchanged


class _BlockWithUnusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


class _Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_BlockWithUnusedLayer(), _BlockWithUnusedLayer()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


@pytest.mark.parametrize("spec", [
    pk.Unstructured(sparsity=0.5, importance="wanda"),
    pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
    DENSE_SPECS[0],
], ids=["wanda", "sparsegpt", "sparsegpt-dense"])
def test_a_layer_that_never_runs_is_named(spec: pk.Unstructured) -> None:
    calibration = [torch.randn(4, 8) for _ in range(3)]
    with pytest.raises(pk.CalibrationError, match=r"blocks\.0\.unused\.weight never ran"):
        pk.prune(_Stack(), spec, calibration=calibration)
    result = pk.prune(_Stack(), spec, calibration=calibration, ignore=["blocks.0.unused", "blocks.1.unused"])
    assert set(result.plan.masks) == {"blocks.0.used.weight", "blocks.1.used.weight"}
