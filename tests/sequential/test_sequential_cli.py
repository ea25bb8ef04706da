"""``prunekit prune --model hf:DIR``: calibrated on a text file, written block by block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from seq_models import WORDS, batches, outputs, transformers
from typer.testing import CliRunner

import prunekit as pk
from prunekit.cli.app import app
from prunekit.sequential import prune_pretrained, text_calibration

runner = CliRunner()


def _said(output: str) -> str:
    """The output with line wrapping undone."""
    return " ".join(output.split())


def _text(tmp_path: Path) -> Path:
    generator = torch.Generator().manual_seed(0)
    words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (200,), generator=generator)]
    path = tmp_path / "calibration.txt"
    path.write_text(" ".join(words), encoding="utf-8")
    return path


def test_cli_prunes_a_folder_like_the_library(llama_dir: Path, tmp_path: Path) -> None:
    text = _text(tmp_path)
    res = runner.invoke(app, ["prune", "--model", f"hf:{llama_dir}", "--method", "sparsegpt",
                              "--calibration-text", str(text), "--calibration-samples", "4",
                              "--calibration-length", "32", "--out", str(tmp_path / "cli"),
                              "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["sparsity"] == 0.5 and payload["output"] == str(tmp_path / "cli")
    calib = text_calibration(llama_dir, text, samples=4, length=32)
    assert [b["input_ids"].shape for b in calib] == [torch.Size([1, 32])] * 4
    prune_pretrained(llama_dir, pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
                     calibration=calib, out=tmp_path / "api")
    assert (tmp_path / "cli" / "model.safetensors").read_bytes() == (
        tmp_path / "api" / "model.safetensors").read_bytes()
    x = batches(1, seed=3)[0]
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "cli"))
    assert torch.equal(outputs(hf, x), outputs(pk.load(tmp_path / "cli"), x))


def test_cli_table_and_nm(llama_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["prune", "--model", f"hf:{llama_dir}", "--method", "nm",
                              "--importance", "wanda", "--calibration-text",
                              str(_text(tmp_path)), "--out", str(tmp_path / "nm")])
    assert res.exit_code == 0, res.output
    assert "model.layers.0.mlp.down_proj.weight" in res.stdout
    assert "50.00% of targeted weights removed" in res.stdout


def test_cli_refuses_missing_text_output_and_folder(llama_dir: Path, tmp_path: Path) -> None:
    base = ["prune", "--method", "wanda"]
    res = runner.invoke(app, [*base, "--model", f"hf:{llama_dir}", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--calibration-text" in _said(res.output)
    text = str(_text(tmp_path))
    res = runner.invoke(app, [*base, "--model", f"hf:{llama_dir}", "--calibration-text", text])
    assert res.exit_code == 2 and "--out" in _said(res.output)
    res = runner.invoke(app, [*base, "--model", f"hf:{tmp_path / 'none'}",
                              "--calibration-text", text, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "is not a folder" in _said(res.output)
    res = runner.invoke(app, [*base, "--model", "mlp"])
    assert res.exit_code == 2 and "hf:DIR" in _said(res.output)
    assert not (tmp_path / "o").exists()


def test_cli_transformer_method_equals_the_library(llama_dir: Path, tmp_path: Path) -> None:
    text = _text(tmp_path)
    res = runner.invoke(app, ["prune", "--model", f"hf:{llama_dir}", "--method", "transformer",
                              "--heads", "0.5", "--neurons", "0.25", "--layers", "1",
                              "--importance", "activation", "--calibration-text", str(text),
                              "--calibration-samples", "4", "--calibration-length", "32",
                              "--out", str(tmp_path / "cli"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["spec"]["layers"] == 1
    calib = text_calibration(llama_dir, text, samples=4, length=32)
    spec = pk.TransformerStructured(heads=0.5, neurons=0.25, layers=1, importance="activation")
    prune_pretrained(llama_dir, spec, calibration=calib, out=tmp_path / "api")
    assert (tmp_path / "cli" / "model.safetensors").read_bytes() == (
        tmp_path / "api" / "model.safetensors").read_bytes()
    assert len(pk.load(tmp_path / "cli").model.layers) == 2


def test_cli_transformer_magnitude_needs_no_text(llama_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["prune", "--model", f"hf:{llama_dir}", "--method", "transformer",
                              "--neurons", "0.5", "--out", str(tmp_path / "small")])
    assert res.exit_code == 0, res.output
    assert "model.layers.0.mlp.up_proj.weight" in res.stdout
    loaded = pk.load(tmp_path / "small")
    assert loaded.model.layers[0].mlp.up_proj.out_features == 64


@pytest.mark.parametrize(("args", "said"), [
    (["--model", "lenet", "--heads", "0.5"], "--heads / --neurons / --layers need --method "
                                             "transformer"),
    (["--model", "lenet", "--method", "transformer", "--heads", "0.5"], "prunes a Hugging "
                                                                        "Face folder"),
    (["--method", "transformer", "--sparsity", "0.5"], "do not apply to --method transformer"),
    (["--method", "transformer", "--layers", "1"], "calibration data"),
])
def test_cli_transformer_bad_flags(args: list[str], said: str, llama_dir: Path,
                                   tmp_path: Path) -> None:
    model = [] if "--model" in args else ["--model", f"hf:{llama_dir}"]
    res = runner.invoke(app, ["prune", *model, *args, "--out", str(tmp_path / "x")])
    assert res.exit_code == 2, res.output
    assert said in _said(res.output)
    assert not (tmp_path / "x").exists()
