"""``prunekit prune``: table and JSON output, model references, exit codes, help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from safetensors.torch import save_file
from typer.testing import CliRunner

import prunekit as pk
from prunekit.cli.app import app
from prunekit.cli.errors import CheckFailed, report_failures

HERE = Path(__file__).parent
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_prune_prints_the_per_layer_summary() -> None:
    res = invoke("prune", "--model", "mlp", "--method", "unstructured", "--sparsity", "0.9")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    for layer, shape, nonzero in (("1", "256x784", 20070), ("3", "128x256", 3277), ("5", "10x128", 128)):
        row = next(line for line in lines if f" {layer} " in line and shape in line)
        assert str(nonzero) in row and "90.00%" in row and "pruned" in row
    assert "90.00% of targeted weights removed" in res.stdout


def test_json_output_equals_the_library_summary() -> None:
    res = invoke("prune", "--model", "mlp", "--sparsity", "0.9", "--scope", "global", "--json")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    spec = pk.Unstructured(sparsity=0.9, scope="global")
    expected = pk.prune(pk.zoo.build("mlp"), spec, pk.zoo.example_inputs("mlp")).summary().to_dict()
    assert payload["model"] == "mlp" and payload["spec"] == spec.to_dict()
    assert {k: payload[k] for k in expected} == expected


def test_nm_json_lists_skipped_layers_with_reason() -> None:
    res = invoke("prune", "--model", "vgg", "--method", "nm", "--nm", "2:4", "--ignore", "0.0", "--json")
    assert res.exit_code == 0, res.output
    layers = {row["name"]: row for row in json.loads(res.stdout)["layers"]}
    assert layers["0.0"]["status"] == "skipped: ignored by '0.0'"
    assert all(r["sparsity"] == 0.5 for n, r in layers.items() if n != "0.0")


def test_user_factory_and_safetensors_weights(tmp_path: Path) -> None:
    from cli_factories import tiny

    weights = tmp_path / "w.safetensors"
    model = tiny()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["0.weight"][:, :4] = 0.0  # recognisable: half of layer 0 is already zero
    save_file(state, str(weights))
    res = invoke("prune", "--model", "cli_factories:tiny", "--weights", str(weights),
                 "--input-shape", "2,8", "--threshold", "1e-9", "--json")
    assert res.exit_code == 0, res.output
    layers = {row["name"]: row for row in json.loads(res.stdout)["layers"]}
    assert layers["0"]["nonzero"] == 64 and layers["2"]["nonzero"] == 64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sparsity", "1.5"], "sparsity must be in [0, 1)"),
        (["--sparsity", "0.5", "--threshold", "0.1"], "exactly one of sparsity= or threshold="),
        (["--scope", "everything"], "unknown scope 'everything'"),
        (["--method", "nm", "--nm", "5:4"], "n_keep (5) must not exceed m (4)"),
        (["--method", "nm", "--nm", "two:four"], "bad --nm 'two:four'"),
        (["--method", "nm", "--sparsity", "0.5"], "do not apply to --method nm"),
        (["--model", "vgg", "--method", "nm"], "0.0.weight (input width 3)"),
        (["--ignore", "nothing_here"], "match no module"),
        (["--ignore", "[red]x[/red]"], "'[red]x[/red]'"),  # shown verbatim, not as markup
        (["--model", "alexnet"], "unknown zoo model 'alexnet'"),
        (["--model", "cli_factories:missing", "--input-shape", "2,8"], "cannot import model factory"),
        (["--model", "cli_factories:not_a_module", "--input-shape", "2,8"], "returned str"),
        (["--model", "cli_factories:tiny"], "--input-shape is required"),
        (["--model", "cli_factories:tiny", "--input-shape", "2,5"], "does not run on the example"),
        (["--weights", "/nonexistent.safetensors"], "cannot read weights"),
    ],
)
def test_bad_input_exits_2_with_error_and_hint(args: list[str], message: str) -> None:
    res = invoke("prune", *args)
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())  # rich may wrap long lines
    assert "error:" in text and message in text


def test_bad_option_value_is_a_usage_error_exit_2() -> None:
    res = invoke("prune", "--method", "magic")
    assert res.exit_code == 2


def test_help_has_examples_and_exit_codes() -> None:
    res = invoke("prune", "--help")
    assert res.exit_code == 0
    assert "prunekit prune --model lenet --method unstructured --sparsity 0.9" in res.stdout
    assert "Exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 3 internal error" in " ".join(
        res.stdout.split()
    )


def _probe_app() -> typer.Typer:
    probe = typer.Typer()

    @probe.command()
    @report_failures
    def run(what: str) -> None:
        if what == "check":
            raise CheckFailed("accuracy 0.41 < 0.90")
        if what == "input":
            raise pk.TargetError("no layer named 'x'", "see named_modules()")
        if what == "bug":
            raise RuntimeError("boom")
        if what == "internal":
            raise pk.PruningBrokeModelError("structured pruning broke the model", "please report it")

    return probe


@pytest.mark.parametrize(
    ("what", "code", "text"),
    [
        ("ok", 0, ""),
        ("check", 1, "check failed: accuracy 0.41 < 0.90"),
        ("input", 2, "error: no layer named 'x'"),
        ("bug", 3, "internal error: RuntimeError: boom"),
        ("internal", 3, "internal error: structured pruning broke the model"),
    ],
)
def test_one_mapping_from_failures_to_exit_codes(what: str, code: int, text: str) -> None:
    res = runner.invoke(_probe_app(), [what])
    assert res.exit_code == code
    assert text in res.output
    if code == 2:
        assert "hint: see named_modules()" in res.output
    if code == 3:
        assert "please report" in res.output and "--verbose" in res.output


def _failing_prune(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise ZeroDivisionError("a prunekit bug")

    monkeypatch.setattr("prunekit.unstructured.plan_masks", boom)


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_subcommand_prints_the_traceback(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_prune(monkeypatch)
    args = ["prune", "--model", "mlp", "--sparsity", "0.5"]
    res = invoke(*(["--verbose", *args] if where == "before" else [*args, "--verbose"]))
    assert res.exit_code == 3, res.output
    assert "internal error: unstructured l1 pruning failed while validating" in res.output
    assert "Traceback" in res.output and "ZeroDivisionError: a prunekit bug" in res.output


def test_without_verbose_an_internal_error_has_no_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _failing_prune(monkeypatch)
    res = invoke("prune", "--model", "mlp", "--sparsity", "0.5")
    assert res.exit_code == 3 and "Traceback" not in res.output and "please report" in res.output


def test_console_command_in_a_subprocess() -> None:
    exe = Path(sys.executable).with_name("prunekit")
    fallback = [sys.executable, "-c", "from prunekit.cli.app import main; main()"]
    command = [str(exe)] if exe.exists() else fallback
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ok = subprocess.run(
        [*command, "prune", "--model", "mlp", "--sparsity", "0.9", "--json"],
        capture_output=True, text=True, env=env, cwd=HERE, timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["sparsity"] == pytest.approx(0.9, abs=1e-6)


@pytest.mark.torchvision
def test_torchvision_model_reference() -> None:
    pytest.importorskip("torchvision")
    res = invoke("prune", "--model", "torchvision:resnet18", "--input-shape", "1,3,32,32",
                 "--sparsity", "0.5", "--scope", "global", "--json")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert len(payload["layers"]) == 21  # 20 convolutions + fc
    assert payload["targeted_numel"] - payload["targeted_nonzero"] == round(0.5 * payload["targeted_numel"])
    res = invoke("prune", "--model", "torchvision:nonet", "--input-shape", "1,3,32,32")
    assert res.exit_code == 2 and "unknown torchvision model 'nonet'" in res.output


def test_pickle_weights_are_refused(tmp_path: Path) -> None:
    import torch
    from cli_factories import tiny

    path = tmp_path / "w.pt"
    torch.save(tiny().state_dict(), path)
    res = invoke("prune", "--model", "cli_factories:tiny", "--input-shape", "2,8",
                 "--weights", str(path))
    assert res.exit_code == 2 and "cannot read weights" in res.output
