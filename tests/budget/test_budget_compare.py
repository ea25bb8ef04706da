"""``prunekit compare`` budget variants: names parse to budgeted structured specs."""

from __future__ import annotations

import pytest

import prunekit as pk
from prunekit.compare import parse_variant, parse_variants


@pytest.mark.parametrize(("name", "target", "removed"), [
    ("structured-macs25", pk.MACs(0.25), 0.75),
    ("structured-params30", pk.Params(0.3), 0.7),
    ("structured-lat50", pk.Latency(0.5, batch=64), 0.5),
])
def test_budget_variants(name: str, target, removed: float) -> None:
    variant = parse_variant(name)
    assert variant.family == "structured" and variant.structured
    assert variant.specs == (pk.Structured(target=target, importance="l1"),)
    assert variant.sparsity == pytest.approx(removed)


@pytest.mark.parametrize("name", ["structured-macs0", "structured-lat100", "structured-lat"])
def test_bad_budget_variants_are_refused(name: str) -> None:
    with pytest.raises(pk.SpecError):
        parse_variants(name)


def test_the_hint_names_the_budget_forms() -> None:
    with pytest.raises(pk.SpecError) as info:
        parse_variants("structured-flops25")
    assert "structured-macs25" in str(info.value)


def test_a_budget_variant_prunes_the_compare_model_to_its_target() -> None:
    from prunekit.compare.pipeline import prune_variant

    model, x = pk.zoo.build("fmnist_resnet").eval(), pk.zoo.example_inputs("fmnist_resnet", 1)
    result = prune_variant(model, parse_variant("structured-macs25"), x)
    assert result.budget.macs_ratio == pytest.approx(0.25, rel=0.02)
