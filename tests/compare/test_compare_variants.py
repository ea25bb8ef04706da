"""Variant names -> recipes, and the errors for bad names."""

from __future__ import annotations

import pytest

from prunekit import NM, Structured, Unstructured
from prunekit.compare import ALL_VARIANTS, DEFAULT_VARIANTS, parse_variant, parse_variants
from prunekit.errors import SpecError


def test_each_family_parses_to_its_recipe() -> None:
    u = parse_variant("unstructured-95")
    assert u.family == "unstructured"
    assert u.specs == (Unstructured(sparsity=0.95, scope="global", importance="lamp"),)
    nm = parse_variant("nm-2:4")
    assert nm.specs == (NM(n_keep=2, m=4),) and nm.sparsity == 0.5
    s = parse_variant("Structured-25")
    assert s.name == "structured-25" and isinstance(s.specs[0], Structured)
    assert s.specs[0].sparsity == 0.25 and s.structured
    w = parse_variant("wanda-90")
    assert w.family == "unstructured" and w.calibrated
    assert w.specs == (Unstructured(sparsity=0.9, importance="wanda"),)
    g = parse_variant("sparsegpt-95")
    assert g.specs == (Unstructured(sparsity=0.95, importance="sparsegpt"),) and g.calibrated
    c = parse_variant("combined-50+80")
    assert [type(x) for x in c.specs] == [Structured, Unstructured]
    assert c.specs[0].sparsity == 0.5 and c.specs[1].sparsity == 0.8
    assert c.specs[1].scope == "global" and c.specs[1].importance == "l1"


def test_lists_default_and_all() -> None:
    assert [v.name for v in parse_variants(None)] == list(DEFAULT_VARIANTS)
    assert [v.name for v in parse_variants("all")] == list(ALL_VARIANTS)
    assert [v.name for v in parse_variants(" unstructured-50 , nm-2:4 ")] == [
        "unstructured-50", "nm-2:4"]


@pytest.mark.parametrize("text, words", [
    ("foo", "unknown variant 'foo'"),
    ("unstructured-100", "out of range"),
    ("structured-0", "out of range"),
    ("nm-3:2", "n_keep"),
    ("unstructured-50,unstructured-50", "listed twice"),
])
def test_bad_names_are_rejected_with_the_naming_hint(text: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_variants(text)
    assert words in str(info.value)


def test_every_bad_entry_is_named_at_once() -> None:
    with pytest.raises(SpecError) as info:
        parse_variants("foo,unstructured-120,bar")
    assert "foo" in info.value.message and "120" in info.value.message
    assert "bar" in info.value.message
