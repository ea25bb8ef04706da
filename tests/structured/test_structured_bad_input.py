"""Bad input to structured pruning: typed errors naming the problem, model untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prunekit as pk
import prunekit.structured as structured


def fingerprint(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return state, [repr(m) for m in model.modules()]


def assert_untouched(model: nn.Module, before: tuple[dict[str, torch.Tensor], list[str]]) -> None:
    state, reprs = before
    now = model.state_dict()
    assert now.keys() == state.keys()
    assert all(torch.equal(now[k], state[k]) for k in state)
    assert [repr(m) for m in model.modules()] == reprs


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_out_of_range(sparsity: float) -> None:
    with pytest.raises(pk.SpecError, match="sparsity"):
        pk.Structured(sparsity=sparsity)


@pytest.mark.parametrize("fields", [{"round_to": 0}, {"min_channels": 0}, {"scope": "model"},
                                    {"importance": "wanda"}])
def test_bad_spec_fields(fields: dict[str, object]) -> None:
    with pytest.raises(pk.SpecError):
        pk.Structured(sparsity=0.5, **fields)  # type: ignore[arg-type]


def test_missing_example_inputs() -> None:
    model = pk.zoo.build("resnet")
    with pytest.raises(pk.ExampleInputError, match="example_inputs"):
        pk.prune(model, pk.Structured(sparsity=0.5))


def test_example_inputs_that_do_not_run() -> None:
    model = pk.zoo.build("resnet")
    before = fingerprint(model)
    with pytest.raises(pk.ExampleInputError, match="does not run"):
        pk.prune(model, pk.Structured(sparsity=0.5), torch.randn(2, 5, 32, 32), inplace=True)
    assert_untouched(model, before)


def test_ignore_entry_matching_nothing() -> None:
    model = pk.zoo.build("resnet")
    with pytest.raises(pk.TargetError, match="stages.9"):
        pk.prune(model, pk.Structured(sparsity=0.5), pk.zoo.example_inputs("resnet"),
                 ignore=["stages.9"])


def test_min_channels_is_respected_even_at_high_sparsity() -> None:
    model, x = pk.zoo.build("vgg"), pk.zoo.example_inputs("vgg")
    result = pk.prune(model, pk.Structured(sparsity=0.99, min_channels=5), x)
    for module in result.model.modules():
        if isinstance(module, nn.Conv2d):
            assert module.out_channels >= 5


def test_threshold_above_every_score_keeps_min_channels() -> None:
    model, x = pk.zoo.build("vgg"), pk.zoo.example_inputs("vgg")
    result = pk.prune(model, pk.Structured(threshold=1e9, min_channels=3), x)
    widths = [m.out_channels for m in result.model.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [3] * len(widths)


class CumsumNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.mix = Mixer()
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(self.conv(x)).mean(dim=(2, 3)))


class Mixer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, dim=1)  # mixes channels: no rule for it


def test_unknown_op_on_channels_raises_naming_op_and_module() -> None:
    model = CumsumNet()
    before = fingerprint(model)
    with pytest.raises(pk.UnsupportedModelError, match=r"cumsum.*'mix'") as info:
        pk.prune(model, pk.Structured(sparsity=0.5), torch.randn(1, 3, 8, 8), inplace=True)
    assert "ignore=['mix']" in str(info.value)
    assert_untouched(model, before)


def test_ignoring_the_unknown_op_module_pins_its_channels() -> None:
    model = CumsumNet()
    result = pk.prune(model, pk.Structured(sparsity=0.5), torch.randn(1, 3, 8, 8),
                      ignore=["mix"])
    assert result.model.conv.out_channels == 8  # read by the ignored module: kept


def test_train_mode_model_is_pruned_in_eval_and_keeps_its_mode() -> None:
    model, x = pk.zoo.build("resnet"), pk.zoo.example_inputs("resnet")
    model.train()
    stats = model.stem[1].running_mean.clone()
    result = pk.prune(model, pk.Structured(sparsity=0.5), x)
    assert model.training and result.model.training
    assert torch.equal(model.stem[1].running_mean, stats)  # no BN statistics update


class HardCodedView(nn.Module):
    """Reshapes with a literal size that pruning cannot update."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.split = Split()
        self.fc2 = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.split(self.fc1(x)))


class Split(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], 4, 4).sum(dim=1)  # (N, 4): literal 4 x 4


def test_hard_coded_reshape_is_pinned_after_a_failed_try() -> None:
    model = HardCodedView()
    x = torch.randn(2, 6)
    result = pk.prune(model, pk.Structured(sparsity=0.5), x)
    assert result.model(x).shape == (2, 3)
    assert result.model.fc1.out_features == 16


def test_inplace_failure_restores_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(structured, "MAX_RETRIES", 0)
    model = HardCodedView()
    before = fingerprint(model)
    with pytest.raises(pk.PruningBrokeModelError, match="Split"):
        pk.prune(model, pk.Structured(sparsity=0.5), torch.randn(2, 6), inplace=True)
    assert_untouched(model, before)
    assert model.fc1.out_features == 16 and model.fc1.weight.shape == (16, 6)


def test_copy_is_default_and_inplace_mutates() -> None:
    model, x = pk.zoo.build("resnet"), pk.zoo.example_inputs("resnet")
    original = copy.deepcopy(model)
    result = pk.prune(model, pk.Structured(sparsity=0.5), x)
    assert result.model is not model
    assert_untouched(model, fingerprint(original))
    result = pk.prune(model, pk.Structured(sparsity=0.5), x, inplace=True)
    assert result.model is model and model.stem[0].out_channels == 8
