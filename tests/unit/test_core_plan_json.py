"""Plan JSON: kept indices are bit-packed when ascending and round-trip exactly."""

from __future__ import annotations

import json

import pytest

from prunekit.errors import PlanError
from prunekit.plan import Plan


@pytest.mark.parametrize("kept", [[], [0], [1, 2, 4, 127], list(range(0, 300, 3)), [5, 1, 3]])
def test_kept_indices_round_trip_exactly_in_every_order(kept):
    plan = Plan(spec={"kind": "structured"}, kept={"fc.weight": {1: kept}})
    again = Plan.from_json(plan.to_json())
    assert again.kept == {"fc.weight": {1: kept}}


def test_ascending_kept_indices_are_stored_far_smaller_than_a_list():
    kept = list(range(0, 128, 2))
    stored = Plan(spec={}, kept={"w": {0: kept}}).to_dict()["kept"]["w"]["0"]
    assert isinstance(stored, dict) and len(json.dumps(stored)) * 5 < len(json.dumps(kept))


def test_plans_that_store_kept_lists_still_load_and_bad_entries_fail_cleanly():
    data = Plan(spec={}).to_dict()
    data["kept"] = {"w": {"0": [0, 3, 5]}}
    assert Plan.from_dict(data).kept == {"w": {0: [0, 3, 5]}}
    data["kept"] = {"w": {"0": {"bits": "not base64!"}}}
    with pytest.raises(PlanError, match="kept-index"):
        Plan.from_dict(data)
