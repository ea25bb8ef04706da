"""Bad input: a typed error naming the item and the fix, and the model left bit-identical."""

from __future__ import annotations

import threading

import pytest
import torch
from core_testlib import assert_same, fingerprint
from torch import nn

import prunekit as pk


def mlp() -> nn.Module:
    return pk.zoo.build("mlp")


def with_nan(value: float) -> nn.Module:
    model = mlp()
    with torch.no_grad():
        model[3].weight[0, 0] = value
    return model


def already_pruned() -> nn.Module:
    return pk.prune(mlp(), pk.Unstructured(sparsity=0.8)).model


class Locked(nn.Module):
    """Holds a lock, so deepcopy fails (only inplace=True can prune it)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.lock = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class ZeroAllergic(nn.Module):
    """Runs while dense, fails once a weight is zero: the check after masking catches it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.fc.weight == 0).any():
            raise RuntimeError("zero weight")
        return self.fc(x)


X = pk.zoo.example_inputs("mlp")

# (id, model factory, call(model, inplace), error type, words the message must contain)
CASES = [
    ("sparsity>=1", mlp, lambda m, i: pk.prune(m, pk.Unstructured(sparsity=1.2), inplace=i),
     pk.SpecError, ["sparsity must be in [0, 1), got 1.2"]),
    ("sparsity<0", mlp, lambda m, i: pk.prune(m, pk.Unstructured(sparsity=-0.5), inplace=i),
     pk.SpecError, ["got -0.5"]),
    ("both", mlp, lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5, threshold=0.1), inplace=i),
     pk.SpecError, ["exactly one of sparsity= or threshold="]),
    ("neither", mlp, lambda m, i: pk.prune(m, pk.Unstructured(), inplace=i),
     pk.SpecError, ["exactly one of sparsity= or threshold="]),
    ("n_keep>m", mlp, lambda m, i: pk.prune(m, pk.NM(5, 4), inplace=i),
     pk.SpecError, ["n_keep (5) must not exceed m (4)"]),
    ("m-not-dividing", mlp, lambda m, i: pk.prune(m, pk.NM(1, 3), X, inplace=i),
     pk.ShapeError, ["m=3", "1.weight (input width 784)", "3.weight (input width 256)", "ignore="]),
    ("ignore-matches-nothing", mlp,
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), ignore=["classifer", "3"], inplace=i),
     pk.TargetError, ["'classifer'", "match no module"]),
    ("ignore-typo-suggests", lambda: pk.zoo.build("lenet"),
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), ignore=["feature.0"], inplace=i),
     pk.TargetError, ["did you mean features.0"]),
    ("ignore-bad-type", mlp, lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), ignore=[3], inplace=i),
     pk.TargetError, ["ignore entry 3"]),
    ("no-prunable-layers", lambda: nn.Sequential(nn.ReLU(), nn.LayerNorm(4)),
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), inplace=i),
     pk.TargetError, ["no prunable layer found in Sequential"]),
    ("everything-ignored", mlp,
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), ignore=[nn.Linear], inplace=i),
     pk.TargetError, ["no prunable layer", "3 ignored"]),
    ("nan-weight", lambda: with_nan(float("nan")),
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), inplace=i),
     pk.WeightError, ["NaN or inf: 3.weight"]),
    ("inf-weight", lambda: with_nan(float("inf")),
     lambda m, i: pk.prune(m, pk.NM(2, 4), inplace=i), pk.WeightError, ["3.weight"]),
    ("inputs-do-not-run", mlp,
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), torch.randn(2, 5), inplace=i),
     pk.ExampleInputError, ["does not run on the example inputs", "mat1 and mat2"]),
    ("override-matches-nothing", mlp,
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), overrides={"head": 0.1}, inplace=i),
     pk.TargetError, ["override entries match no module", "'head'"]),
    ("override-on-non-target", mlp,
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), overrides={"2": 0.1}, inplace=i),
     pk.TargetError, ["override entries match no pruned layer: '2'"]),
    ("override-bad-sparsity", mlp,
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), overrides={"1": 1.5}, inplace=i),
     pk.SpecError, ["override sparsity for '1'"]),
    ("override-with-nm", mlp, lambda m, i: pk.prune(m, pk.NM(2, 4), overrides={"1": 0.5}, inplace=i),
     pk.SpecError, ["overrides do not apply to N:M"]),
    ("lower-than-existing", already_pruned,
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), inplace=i),
     pk.SpecError, ["below what is already pruned", "1.weight"]),
    ("not-a-spec", mlp, lambda m, i: pk.prune(m, "unstructured", inplace=i),
     pk.SpecError, ["spec must be Unstructured, NM or Structured"]),
    ("lazy-module", lambda: nn.Sequential(nn.Linear(4, 4), nn.LazyLinear(3)),
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), inplace=i),
     pk.TargetError, ["1 is a lazy module", "not initialised"]),
    ("breaks-after-masking", ZeroAllergic,
     lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5), torch.randn(2, 4), inplace=i),
     pk.PruningBrokeModelError, ["broke the model", "zero weight"]),
]


@pytest.mark.parametrize("inplace", [False, True], ids=["copy", "inplace"])
@pytest.mark.parametrize(("make", "call", "error", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_typed_error_and_leaves_model_bit_identical(make, call, error, words, inplace) -> None:
    model = make()
    before = fingerprint(model)
    with pytest.raises(error) as info:
        call(model, inplace)
    for word in words:
        assert word in str(info.value), str(info.value)
    assert info.value.hint, "every error carries a hint"
    assert_same(before, fingerprint(model))


def test_model_that_cannot_be_copied_asks_for_inplace_and_works_inplace() -> None:
    model = Locked()
    before = fingerprint(model)
    with pytest.raises(pk.UnsupportedModelError, match="cannot copy Locked") as info:
        pk.prune(model, pk.Unstructured(sparsity=0.5))
    assert "inplace=True" in info.value.hint
    assert_same(before, fingerprint(model))
    result = pk.prune(model, pk.Unstructured(sparsity=0.5), inplace=True)
    assert result.model is model and int((model.fc.weight == 0).sum()) == 8


def test_model_is_not_a_module() -> None:
    with pytest.raises(pk.SpecError, match="model must be a torch.nn.Module or a prunekit PruneResult, got dict"):
        pk.prune({}, pk.Unstructured(sparsity=0.5))


def test_successful_copy_prune_leaves_the_input_model_bit_identical() -> None:
    model = mlp()
    before = fingerprint(model)
    result = pk.prune(model, pk.Unstructured(sparsity=0.5), X)
    assert result.model is not model
    assert_same(before, fingerprint(model))
