"""pk.prune with Unstructured / NM specs: exact counts, targeting, iteration, summary, plans."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from core_testlib import ConvStack, nonzero_free
from torch import nn

import prunekit as pk
from prunekit.apply.masks import existing_mask
from prunekit.select.nm import is_nm


def mlp() -> nn.Module:
    return nonzero_free(pk.zoo.build("mlp"))


def removed_counts(result: pk.PruneResult) -> dict[str, int]:
    return {r.name: r.numel_before - r.nonzero for r in result.summary().rows}


@pytest.mark.parametrize("sparsity", [0.3, 0.9, 0.97])
def test_layer_scope_removes_round_s_numel_in_every_layer(sparsity: float) -> None:
    result = pk.prune(mlp(), pk.Unstructured(sparsity=sparsity))
    numels = {"1": 784 * 256, "3": 256 * 128, "5": 128 * 10}
    assert removed_counts(result) == {k: round(sparsity * n) for k, n in numels.items()}


def test_global_scope_removes_round_s_total_and_ranks_across_layers() -> None:
    model = mlp()
    with torch.no_grad():
        model[5].weight.add_(model[5].weight.sign())  # |w| >= 1: this layer keeps everything
    result = pk.prune(model, pk.Unstructured(sparsity=0.6, scope="global"))
    counts = removed_counts(result)
    total = 784 * 256 + 256 * 128 + 128 * 10
    assert sum(counts.values()) == round(0.6 * total)
    assert counts["5"] == 0 and counts["1"] != round(0.6 * 784 * 256)
    summary = result.summary()
    assert summary.targeted_numel == total
    assert summary.targeted_nonzero == total - round(0.6 * total)


def test_random_importance_is_exact_and_seeded() -> None:
    spec = pk.Unstructured(sparsity=0.5, importance="random")
    a = pk.prune(mlp(), spec, seed=1).plan.masks
    b = pk.prune(mlp(), spec, seed=1).plan.masks
    c = pk.prune(mlp(), spec, seed=2).plan.masks
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert all(int((~m).sum()) == round(0.5 * m.numel()) for m in a.values())


def test_l1_removes_the_smallest_magnitudes() -> None:
    result = pk.prune(mlp(), pk.Unstructured(sparsity=0.8))
    for module in (result.model[1], result.model[3]):
        mask = existing_mask(module)
        assert module.weight_orig[~mask].abs().max() <= module.weight_orig[mask].abs().min()


def test_threshold_removes_everything_below_in_every_layer() -> None:
    model = mlp()
    result = pk.prune(model, pk.Unstructured(threshold=0.02))
    for name in ("1", "3", "5"):
        weight = model.get_submodule(name).weight
        assert torch.equal(existing_mask(result.model.get_submodule(name)), weight.abs() >= 0.02)


def test_sparsity_zero_is_explicit_in_summary_and_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="prunekit"):
        result = pk.prune(mlp(), pk.Unstructured(sparsity=0.0))
    assert "removes no weight" in caplog.text
    assert all(r.status == "pruned: nothing removed" for r in result.summary().rows)
    assert "no weight was removed" in str(result.summary())


def test_threshold_that_removes_nothing_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="prunekit"):
        result = pk.prune(mlp(), pk.Unstructured(threshold=1e-12))
    assert "removes no weight" in caplog.text and result.summary().sparsity == 0.0


# --- targeting -------------------------------------------------------------------------------

class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.conv = nn.Conv1d(8, 8, 1)
        self.head = nn.Linear(8, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens).transpose(1, 2)  # (N, 8, T)
        return self.norm(self.head(self.conv(x).mean(dim=2)))


def pruned_names(result: pk.PruneResult) -> set[str]:
    return {r.name for r in result.summary().rows if r.status.startswith("pruned")}


def test_types_targeted_by_default_and_embeddings_optional() -> None:
    tokens = torch.randint(0, 20, (2, 5))
    assert pruned_names(pk.prune(Mixed(), pk.Unstructured(sparsity=0.5), tokens)) == {"conv", "head"}
    with_embed = pk.prune(Mixed(), pk.Unstructured(sparsity=0.5), tokens, include_embeddings=True)
    assert pruned_names(with_embed) == {"embed", "conv", "head"}
    assert int((with_embed.model.embed.weight == 0).sum()) == 80


@pytest.mark.parametrize(
    ("ignore", "reason"),
    [
        (["head"], "ignored by 'head'"),
        ([nn.Linear], "ignored by 'Linear'"),
        ([re.compile(r"he.d")], "ignored by re.compile('he.d')"),
        ("head", "ignored by 'head'"),  # a single string is one entry
    ],
)
def test_ignore_by_name_type_or_regex_is_listed_with_reason(ignore, reason) -> None:
    model = Mixed()
    result = pk.prune(model, pk.Unstructured(sparsity=0.5), ignore=ignore)
    rows = {r.name: r for r in result.summary().rows}
    assert rows["head"].status == f"skipped: {reason}"
    assert torch.equal(result.model.head.weight, model.head.weight)
    assert pruned_names(result) == {"conv"}
    assert result.plan.skipped == {"head": reason}


def test_ignoring_a_container_skips_its_children() -> None:
    result = pk.prune(pk.zoo.build("lenet"), pk.Unstructured(sparsity=0.5), ignore=["features"])
    assert pruned_names(result) == {"classifier.1", "classifier.3"}
    assert {r.name for r in result.summary().rows if r.status.startswith("skipped")} == {
        "features.0", "features.3"
    }


def test_per_layer_overrides_by_name_and_regex_last_match_wins() -> None:
    overrides = {re.compile(r"\d"): 0.2, "5": 0.7}  # every layer 0.2, then layer "5" 0.7
    result = pk.prune(mlp(), pk.Unstructured(sparsity=0.9), overrides=overrides)
    counts = removed_counts(result)
    assert counts == {"1": round(0.2 * 784 * 256), "3": round(0.2 * 256 * 128), "5": 896}


def test_overrides_with_global_scope_rank_the_rest_globally() -> None:
    result = pk.prune(mlp(), pk.Unstructured(sparsity=0.5, scope="global"), overrides={"1": 0.1})
    counts = removed_counts(result)
    assert counts["1"] == round(0.1 * 784 * 256)
    assert counts["3"] + counts["5"] == round(0.5 * (256 * 128 + 128 * 10))


class Tied(nn.Module):
    """Two Linear layers and an output head that share weights (like a tied LM head)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(8, 8)
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.b.weight = self.a.weight
        self.head = nn.Linear(8, 8, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(torch.relu(self.a(self.embed(tokens)))))


def test_tied_linear_weights_share_one_mask_in_masked_state_and_after_finalize() -> None:
    tokens = torch.randint(0, 8, (2, 3))
    result = pk.prune(nonzero_free(Tied()), pk.Unstructured(sparsity=0.5), tokens)
    model = result.model
    assert result.plan.skipped["b"] == "tied to 'a' (same weight, same mask)"
    assert torch.equal(result.plan.masks["a.weight"], result.plan.masks["b.weight"])
    assert torch.equal(model.a.weight, model.b.weight) and int((model.b.weight == 0).sum()) == 32
    assert model.a.weight_orig is model.b.weight_orig  # still one trainable Parameter
    assert result.summary().targeted_numel == 64  # counted once
    out = model(tokens)
    pk.finalize(model)
    assert model.a.weight is model.b.weight and int((model.a.weight == 0).sum()) == 32
    torch.testing.assert_close(model(tokens), out, rtol=0, atol=0)


def test_weight_tied_to_a_layer_that_is_not_pruned_is_left_alone() -> None:
    model = nonzero_free(Tied())
    result = pk.prune(model, pk.Unstructured(sparsity=0.5))
    assert result.plan.skipped["head"] == "its weight is tied to embed.weight, which is not pruned"
    assert "head.weight" not in result.plan.masks
    assert torch.equal(pk.finalize(result.model).embed.weight, model.embed.weight)
    both = pk.prune(model, pk.Unstructured(sparsity=0.5), include_embeddings=True)
    assert both.plan.skipped["head"] == "tied to 'embed' (same weight, same mask)"
    pk.finalize(both.model)
    assert both.model.head.weight is both.model.embed.weight
    assert int((both.model.embed.weight == 0).sum()) == 32


# --- N:M through prune -----------------------------------------------------------------------

def test_nm_on_linear_conv1d_2d_3d_and_conv_transpose() -> None:
    x = torch.randn(2, 4, 16)
    result = pk.prune(nonzero_free(ConvStack()), pk.NM(2, 4), x)
    for name, module in result.model.named_modules():
        if name:
            mask = existing_mask(module)
            input_dim = 0 if isinstance(module, nn.ConvTranspose2d) else 1
            assert is_nm(mask, 2, 4, input_dim) and int(mask.sum()) == mask.numel() // 2, name
    assert result.model(x).shape == (2, 8)
    assert result.summary().sparsity == 0.5


# --- iterative pruning -----------------------------------------------------------------------

@pytest.mark.parametrize("scope", ["layer", "global"])
def test_iterative_pruning_only_removes_more(scope: str) -> None:
    first = pk.prune(mlp(), pk.Unstructured(sparsity=0.5, scope=scope))
    model = first.model
    with torch.no_grad():  # training moved the weights: pruned ones may now look "large"
        for name in ("1", "3", "5"):
            model.get_submodule(name).weight_orig.add_(torch.randn_like(model.get_submodule(name).weight_orig))
    second = pk.prune(model, pk.Unstructured(sparsity=0.8, scope=scope))
    total = 0
    for key, mask in second.plan.masks.items():
        before = first.plan.masks[key]
        assert not (mask & ~before).any(), key  # superset of removals
        total += int((~mask).sum())
        if scope == "layer":
            assert int((~mask).sum()) == round(0.8 * mask.numel())
    if scope == "global":
        assert total == round(0.8 * sum(m.numel() for m in second.plan.masks.values()))


def test_nm_after_unstructured_keeps_earlier_removals() -> None:
    first = pk.prune(mlp(), pk.Unstructured(sparsity=0.3))
    second = pk.prune(first.model, pk.NM(2, 4), ignore=["5"])
    for key, mask in second.plan.masks.items():
        assert not (mask & ~first.plan.masks[key]).any()
        assert is_nm(mask, 2, 4)


def test_lower_sparsity_than_existing_is_a_spec_error() -> None:
    first = pk.prune(mlp(), pk.Unstructured(sparsity=0.8))
    with pytest.raises(pk.SpecError, match="below what is already pruned in: 1.weight"):
        pk.prune(first.model, pk.Unstructured(sparsity=0.5))


# --- plans -----------------------------------------------------------------------------------

def test_plan_json_round_trip_is_exact() -> None:
    result = pk.prune(ConvStack(), pk.NM(1, 4), ignore=["fc"])
    plan = result.plan
    again = pk.Plan.from_json(plan.to_json())
    assert again.spec == plan.spec == pk.NM(1, 4).to_dict()
    assert again.masks.keys() == plan.masks.keys()
    assert all(torch.equal(again.masks[k], plan.masks[k]) for k in plan.masks)
    assert again.shapes == plan.shapes and again.skipped == {"fc": "ignored by 'fc'"}
    assert again.versions["prunekit"] == pk.__version__


def test_apply_plan_onto_a_fresh_model_reproduces_the_masks() -> None:
    result = pk.prune(pk.zoo.build("lenet"), pk.Unstructured(sparsity=0.9, scope="global"))
    plan = pk.Plan.from_json(result.plan.to_json())
    fresh = pk.zoo.build("lenet")
    rebuilt = pk.apply_plan(fresh, plan)
    assert rebuilt is not fresh and not any(True for _ in pk.apply.masks.masked_modules(fresh))
    for name, module in result.model.named_modules():
        mask = existing_mask(module)
        if mask is not None:
            assert torch.equal(existing_mask(rebuilt.get_submodule(name)), mask)
    x = pk.zoo.example_inputs("lenet")
    torch.testing.assert_close(rebuilt(x), result.model(x), rtol=0, atol=0)


def test_apply_plan_refuses_a_model_of_another_shape() -> None:
    plan = pk.prune(nn.Sequential(nn.Linear(8, 4)), pk.Unstructured(sparsity=0.5)).plan
    other = nn.Sequential(nn.Linear(6, 4))
    with pytest.raises(pk.PlanError, match=r"0.weight: model shape \(4, 6\) != plan shape \(4, 8\)"):
        pk.apply_plan(other, plan)
    with pytest.raises(pk.PlanError, match="0.weight: no such module"):
        pk.apply_plan(nn.Sequential(), plan)


def test_plan_from_json_rejects_garbage() -> None:
    with pytest.raises(pk.PlanError, match="not valid JSON"):
        pk.Plan.from_json("{")
    with pytest.raises(pk.PlanError, match="format version"):
        pk.Plan.from_json('{"format_version": 99}')


def test_apply_plan_refuses_a_structured_plan() -> None:
    plan = pk.Plan(spec=pk.Structured(sparsity=0.5).to_dict(), kept={"0.weight": {0: [0, 2]}})
    with pytest.raises(pk.PlanError, match="this is a structured plan") as info:
        pk.apply_plan(nn.Sequential(nn.Linear(4, 4)), plan)
    assert "pk.load" in info.value.hint


class ReadsDirectly(nn.Module):
    """Reads ``proj.weight`` without calling ``proj``; ``aux`` is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.aux = nn.Linear(4, 2)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x @ self.proj.weight.t())


def test_layers_whose_forward_never_ran_are_flagged(caplog: pytest.LogCaptureFixture) -> None:
    model = ReadsDirectly()
    x = torch.randn(2, 4)
    with caplog.at_level(logging.WARNING, logger="prunekit"):
        result = pk.prune(model, pk.Unstructured(sparsity=0.5), x)
    status = {r.name: r.status for r in result.summary().rows}
    assert status == {
        "proj": "pruned (its forward did not run on the example inputs)",
        "aux": "pruned (its forward did not run on the example inputs)",
        "out": "pruned",
    }
    assert "did not run on the example inputs: proj, aux" in caplog.text
    assert pk.Plan.from_json(result.plan.to_json()).notes == result.plan.notes
    assert not model._forward_pre_hooks and not model.proj._forward_pre_hooks  # probes removed
    mha = pk.prune(nn.MultiheadAttention(8, 2, batch_first=True), pk.Unstructured(sparsity=0.5),
                   (torch.randn(1, 3, 8),) * 3)
    assert [r.status for r in mha.summary().rows] == ["pruned"]  # handled through its parent
