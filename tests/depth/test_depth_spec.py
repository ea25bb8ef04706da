"""The Depth spec: validation, JSON round trip."""

from __future__ import annotations

import pytest

import prunekit as pk
from prunekit.specs import Depth, spec_from_dict


@pytest.mark.parametrize("fields", [
    {}, {"blocks": 2, "names": ["a"]}, {"blocks": -1}, {"blocks": True}, {"blocks": 1.5},
    {"blocks": 2, "selection": "random"}, {"names": "layer1.1"}, {"names": ["a", "a"]},
    {"names": [""]}, {"blocks": 1, "channels": pk.Unstructured(sparsity=0.5)},
])
def test_bad_fields_are_spec_errors(fields: dict[str, object]) -> None:
    with pytest.raises(pk.SpecError):
        Depth(**fields)  # type: ignore[arg-type]


def test_to_dict_round_trips_with_channels() -> None:
    spec = Depth(blocks=2, selection="oneshot", channels=pk.Structured(sparsity=0.25))
    again = spec_from_dict(spec.to_dict())
    assert again == spec and again.to_dict()["kind"] == "depth"
    named = Depth(names=["stages.0", "stages.2"])
    assert spec_from_dict(named.to_dict()) == named and named.names == ("stages.0", "stages.2")


def test_only_influence_selections_measure() -> None:
    assert Depth(blocks=1).measured and Depth(blocks=1, selection="oneshot").measured
    assert not Depth(blocks=1, selection="last").measured
    assert not Depth(names=["a"]).measured
