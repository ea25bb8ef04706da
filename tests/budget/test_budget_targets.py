"""Targets are validated on construction and round-trip through the spec's JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch

import prunekit as pk
from prunekit.budget import target_from_dict
from prunekit.specs import spec_from_dict

BAD = [
    (lambda: pk.MACs(0.0), "MACs target must be in (0, 1], got 0.0"),
    (lambda: pk.MACs(1.5), "MACs target must be in (0, 1], got 1.5"),
    (lambda: pk.Params(-0.2), "Params target must be in (0, 1], got -0.2"),
    (lambda: pk.Params(math.nan), "Params target must be in (0, 1]"),
    (lambda: pk.Latency(math.inf), "Latency target must be in (0, 1]"),
    (lambda: pk.Params("0.5"), "Params target must be a number, got '0.5'"),
    (lambda: pk.MACs(True), "MACs target must be a number, got True"),
    (lambda: pk.Latency(0.5, batch=0), "Latency batch must be a positive integer, got 0"),
    (lambda: pk.Latency(0.5, threads=0), "Latency threads must be a positive integer"),
    (lambda: pk.Latency(0.5, rounds=2.0), "Latency rounds must be a positive integer"),
    (lambda: pk.Latency(0.5, device="tpu"), "Latency device 'tpu' is not a torch device"),
    (lambda: pk.Latency(0.5, device=3.5), "is not a torch device"),
    (lambda: pk.Latency(0.5, dtype=torch.int8), "Latency dtype must be a floating torch dtype"),
    (lambda: pk.Latency(0.5, dtype="half-ish"), "Latency dtype must be a floating torch dtype"),
    (lambda: pk.Structured(sparsity=0.5, target=pk.MACs(0.5)),
     "give exactly one of sparsity=, threshold= or target= (got target= and sparsity=)"),
    (lambda: pk.Structured(threshold=0.1, target=pk.Params(0.5)), "got target= and threshold="),
    (lambda: pk.Structured(), "give exactly one of sparsity=, threshold= or target="),
    (lambda: pk.Structured(target=0.5), "target must be pk.Params, pk.MACs or pk.Latency"),
    (lambda: pk.Structured(target={"kind": "flops", "fraction": 0.5}),
     "unknown target kind 'flops'"),
    (lambda: pk.Structured(target={"kind": "macs", "fraction": 0.5, "batch": 2}),
     "bad fields for a macs target"),
    (lambda: pk.Structured(target=pk.MACs(0.5), round_to=0), "round_to must be a positive"),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_targets_are_spec_errors_naming_the_problem(make, message) -> None:
    with pytest.raises(pk.SpecError) as info:
        make()
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_targets_are_frozen_and_store_plain_values() -> None:
    target = pk.Latency(1, batch=64, dtype="bfloat16", device=torch.device("cpu"))
    assert target.fraction == 1.0 and isinstance(target.fraction, float)
    assert target.dtype is torch.bfloat16 and target.device == "cpu"
    with pytest.raises(AttributeError):
        target.fraction = 0.5  # type: ignore[misc]


@pytest.mark.parametrize("target", [
    pk.Params(0.3), pk.MACs(0.25),
    pk.Latency(0.5, batch=64, device="cpu", dtype=torch.float16, threads=2, rounds=3),
])
def test_specs_with_targets_round_trip_through_json(target) -> None:
    spec = pk.Structured(target=target, round_to=8, importance="l2")
    text = json.dumps(spec.to_dict())
    again = spec_from_dict(json.loads(text))
    assert again == spec and again.target == target
    assert target_from_dict(target.to_dict()) == target


def test_ratio_specs_keep_their_old_json() -> None:
    assert "target" not in pk.Structured(sparsity=0.5).to_dict()
    assert spec_from_dict(pk.Structured(sparsity=0.5).to_dict()) == pk.Structured(sparsity=0.5)


def test_a_target_dict_is_accepted_as_the_target() -> None:
    spec = pk.Structured(target={"kind": "params", "fraction": 0.3})
    assert spec.target == pk.Params(0.3)
