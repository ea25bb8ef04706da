"""``prunekit prune --method depth``: flags, output, saved artefact, bad usage."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

import prunekit as pk
from prunekit.cli.app import app

runner = CliRunner()


def test_depth_by_count_prints_the_removed_blocks() -> None:
    res = runner.invoke(app, ["prune", "--model", "resnet", "--method", "depth", "--blocks", "1"])
    assert res.exit_code == 0, res.output
    assert "removed blocks: stages.0.0" in res.stdout and "parameters" in res.stdout


def test_named_block_with_channels_as_json_and_saved(tmp_path: Path) -> None:
    out = tmp_path / "art"
    res = runner.invoke(app, ["prune", "--model", "fmnist_resnet", "--method", "depth",
                              "--block", "stages.0.1", "--sparsity", "0.5", "--json",
                              "--output", str(out)])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["removed_blocks"] == ["stages.0.1"]
    assert payload["spec"]["channels"]["sparsity"] == 0.5
    assert payload["params_after"] < payload["params_before"]
    loaded = pk.load(out)
    assert isinstance(loaded, torch.nn.Module)
    assert sum(p.numel() for p in loaded.parameters()) == payload["params_after"]


def test_bad_depth_usage_exits_2() -> None:
    for args in (["--method", "depth"], ["--method", "depth", "--blocks", "1", "--block", "x"],
                 ["--blocks", "1"], ["--method", "depth", "--block", "stages.1.0"],
                 ["--method", "depth", "--blocks", "9"]):
        res = runner.invoke(app, ["prune", "--model", "fmnist_resnet", *args])
        assert res.exit_code == 2, (args, res.output)
