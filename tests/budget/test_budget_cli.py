"""``prunekit prune --target-*``: the budget report in the table and the JSON, bad input
exits 2 before anything runs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import prunekit as pk
from prunekit.cli.app import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_target_macs_prints_requested_and_achieved() -> None:
    res = invoke("prune", "--model", "resnet", "--method", "structured", "--target-macs", "0.25")
    assert res.exit_code == 0, res.output
    line = next(line for line in res.stdout.splitlines() if line.startswith("budget macs"))
    achieved = float(line.split("achieved ")[1].split()[0])
    assert line.startswith("budget macs 0.250: achieved") and 0.245 <= achieved <= 0.25
    assert "MACs 25,003,264 ->" in res.stdout


def test_json_carries_the_spec_target_and_the_report() -> None:
    res = invoke("prune", "--model", "resnet", "--method", "structured", "--target-params",
                 "0.5", "--json")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["spec"]["target"] == {"kind": "params", "fraction": 0.5}
    assert payload["budget"]["achieved"] == pytest.approx(0.5, rel=0.02)
    assert payload["params_after"] == payload["budget"]["params_after"]


@pytest.mark.parametrize(("args", "message"), [
    (["--target-macs", "0.25", "--target-params", "0.5"], "give one target"),
    (["--target-macs", "0.25", "--sparsity", "0.5"], "give exactly one of sparsity="),
    (["--target-macs", "1.5"], "MACs target must be in (0, 1]"),
    (["--target-latency", "0.5", "--batch", "0"], "Latency batch must be a positive"),
    (["--target-latency", "0.5", "--dtype", "int8"], "Latency dtype must be a floating"),
])
def test_bad_targets_exit_2(args: list[str], message: str) -> None:
    res = invoke("prune", "--model", "resnet", "--method", "structured", *args)
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_a_target_needs_the_structured_method() -> None:
    res = invoke("prune", "--model", "resnet", "--target-macs", "0.25")
    assert res.exit_code == 2 and "needs --method structured" in res.output


def test_the_flags_build_the_latency_target() -> None:
    from prunekit.cli.prune_cmd import build_target

    target = build_target(None, None, 0.5, batch=64, device="cpu", dtype="bfloat16", threads=2)
    assert target == pk.Latency(0.5, batch=64, device="cpu", dtype="bfloat16", threads=2)
