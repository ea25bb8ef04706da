"""``prunekit prune -o DIR`` saves a loadable artefact; ``prunekit inspect DIR`` describes it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import prunekit as pk
from prunekit.cli.app import app

runner = CliRunner()


def test_prune_output_loads_and_inspect_reports_it(tmp_path):
    out = tmp_path / "lenet90"
    res = runner.invoke(app, ["prune", "--model", "lenet", "--sparsity", "0.9", "-o", str(out)])
    assert res.exit_code == 0, res.output
    x = pk.zoo.example_inputs("lenet")
    loaded = pk.load(out)
    assert pk.apply.masks.masked_modules(loaded)
    assert loaded(x).shape == (2, 10)

    res = runner.invoke(app, ["inspect", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["end_state"] == ["masked"] and info["model"]["ref"] == "zoo:lenet"
    assert info["spec"]["sparsity"] == 0.9
    weight = next(t for t in info["tensors"] if t["name"] == "classifier.1.weight")
    assert weight["format"] == "gaps" and weight["masked"]  # 90%: one byte per kept entry
    assert weight["stored_bytes"] < 0.15 * weight["dense_bytes"]
    assert info["bytes_on_disk"] == pk.artifact_bytes(out)

    res = runner.invoke(app, ["inspect", str(out)])
    assert res.exit_code == 0 and "gaps" in res.stdout and "zoo:lenet" in res.stdout


def test_inspect_and_prune_report_bad_paths_with_exit_code_2(tmp_path):
    res = runner.invoke(app, ["inspect", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not an artefact folder" in res.output
    (tmp_path / "taken").mkdir()
    res = runner.invoke(app, ["prune", "--model", "mlp", "-o", str(tmp_path / "taken")])
    assert res.exit_code == 2 and "already exists" in res.output


def test_inspect_table_fits_80_columns_without_cutting_a_cell(tmp_path):
    from rich.console import Console

    from prunekit.cli.inspect_cmd import _render, describe
    from prunekit.io import read_manifest

    model = pk.zoo.build("fmnist_resnet")  # long tensor names (stages.1.0.downsample.1.*)
    result = pk.prune(model, pk.Unstructured(sparsity=0.9, scope="global"),
                      pk.zoo.example_inputs("fmnist_resnet"))
    out = pk.save(result, tmp_path / "u90", model_ref="zoo:fmnist_resnet")
    info = describe(read_manifest(out), out)
    console = Console(width=80, record=True, color_system=None)
    _render(info, console)
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    # a long name may fold onto the next line of its column, never lose characters
    first_column = "".join(line.split()[0] for line in text.splitlines() if line.split())
    for t in info["tensors"]:
        assert t["name"] in first_column, t["name"]
        assert f"{t['stored_bytes']:,}" in text
