"""Specs are validated on construction: a table of bad specs, each with a useful message."""

from __future__ import annotations

import math

import numpy as np
import pytest

import prunekit as pk
from prunekit.specs import spec_from_dict

BAD_SPECS = [
    (lambda: pk.Unstructured(), "exactly one of sparsity= or threshold="),
    (lambda: pk.Unstructured(sparsity=0.5, threshold=0.1), "exactly one of sparsity= or threshold="),
    (lambda: pk.Unstructured(sparsity=1.0), "must be in [0, 1), got 1.0"),
    (lambda: pk.Unstructured(sparsity=-0.1), "must be in [0, 1), got -0.1"),
    (lambda: pk.Unstructured(sparsity=math.nan), "must be in [0, 1)"),
    (lambda: pk.Unstructured(sparsity="0.5"), "must be a number, got '0.5'"),
    (lambda: pk.Unstructured(sparsity=True), "must be a number, got True"),
    (lambda: pk.Unstructured(threshold=-1.0), "threshold must be a finite number >= 0"),
    (lambda: pk.Unstructured(threshold=math.inf), "threshold must be a finite number >= 0"),
    (lambda: pk.Unstructured(sparsity=0.5, scope="model"), "unknown scope 'model'"),
    (lambda: pk.Unstructured(sparsity=0.5, importance="l3"), "unknown importance 'l3'"),
    (lambda: pk.NM(n_keep=3, m=2), "n_keep (3) must not exceed m (2)"),
    (lambda: pk.NM(n_keep=0, m=4), "n_keep must be a positive integer, got 0"),
    (lambda: pk.NM(n_keep=2, m=4.0), "m must be a positive integer, got 4.0"),
    (lambda: pk.NM(importance="taylor"), "unknown importance 'taylor'"),
    (lambda: pk.Structured(sparsity=0.5, round_to=0), "round_to must be a positive integer"),
    (lambda: pk.Structured(sparsity=0.5, min_channels=-1), "min_channels must be a positive"),
    (lambda: pk.Structured(sparsity=0.5, importance="wanda"), "unknown importance 'wanda'"),
]


@pytest.mark.parametrize(("make", "message"), BAD_SPECS)
def test_bad_spec_raises_spec_error_naming_the_problem(make, message) -> None:
    with pytest.raises(pk.SpecError) as info:
        make()
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # `except ValueError` keeps working


def test_bad_spec_errors_carry_a_hint() -> None:
    with pytest.raises(pk.SpecError) as info:
        pk.Unstructured(sparsity=1.5)
    assert info.value.hint and "0.9 removes 90%" in info.value.hint


@pytest.mark.parametrize(
    "spec",
    [
        pk.Unstructured(sparsity=0.0),
        pk.Unstructured(sparsity=np.float32(0.25)),
        pk.Unstructured(threshold=0.05, scope="global", importance="l2"),
        pk.NM(2, 4),
        pk.NM(4, 4),
        pk.Structured(sparsity=0.5, round_to=8),
    ],
)
def test_good_specs_round_trip_through_dicts(spec) -> None:
    again = spec_from_dict(spec.to_dict())
    assert again == spec and type(again) is type(spec)


def test_specs_are_frozen() -> None:
    spec = pk.Unstructured(sparsity=0.5)
    with pytest.raises(AttributeError):
        spec.sparsity = 0.9  # type: ignore[misc]


def test_spec_from_dict_rejects_unknown_kind_and_fields() -> None:
    with pytest.raises(pk.SpecError, match="unknown spec kind"):
        spec_from_dict({"kind": "magic"})
    with pytest.raises(pk.SpecError, match="bad fields for a nm spec"):
        spec_from_dict({"kind": "nm", "n": 2})


def test_nm_sparsity_is_the_fraction_removed() -> None:
    assert pk.NM(2, 4).sparsity == 0.5
    assert pk.NM(1, 4).sparsity == 0.75
