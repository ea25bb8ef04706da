"""Heads, neurons and blocks removed block by block give the in-memory path's smaller model.

Oracle: ``pk.prune(model, TransformerStructured(...))`` on the model ``from_pretrained``
loads. The scoring walk runs the same operations on the same dense activations, and the
cut copies the stored values, so every tensor, the plan and the outputs must be equal
exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from seq_models import (
    batches,
    gpt2_config,
    in_memory,
    llama_config,
    outputs,
    save_checkpoint,
    transformers,
)

import prunekit as pk
from prunekit.errors import CalibrationError, ShapeError, SpecError
from prunekit.io import read_manifest
from prunekit.plan import Plan
from prunekit.sequential import prune_pretrained

CASES = {
    "activation-heads-neurons-block": pk.TransformerStructured(
        heads=0.5, neurons=0.25, layers=1, importance="activation"),
    "magnitude-no-data": pk.TransformerStructured(heads=0.5, neurons=0.25),
    "magnitude-ranked-blocks": pk.TransformerStructured(neurons=0.5, layers=1, round_to=8),
    "explicit-heads-per-layer": pk.TransformerStructured(heads={0: [0, 2], 2: [1, 3]}),
}


def _calibration(spec: pk.TransformerStructured) -> list[Any] | None:
    return batches() if spec.importance != "magnitude" or spec.layers else None


def _assert_equal_models(expected: torch.nn.Module, got: torch.nn.Module) -> None:
    ref, new = expected.state_dict(), got.state_dict()
    assert set(ref) == set(new)
    for key, tensor in ref.items():
        assert new[key].dtype == tensor.dtype, key
        assert torch.equal(new[key], tensor), key


def _plan_of(folder: Path) -> Plan:
    plan = read_manifest(folder).plan
    assert plan is not None
    return Plan.from_dict(plan)


@pytest.mark.parametrize("name", list(CASES))
def test_equals_the_in_memory_path(name: str, llama_dir: Path, tmp_path: Path) -> None:
    spec = CASES[name]
    calib = _calibration(spec)
    reference = in_memory(llama_dir, spec, calib, torch.float32)
    result = prune_pretrained(llama_dir, spec, calibration=calib, out=tmp_path / "out",
                              dtype=torch.float32)
    plan = _plan_of(tmp_path / "out")
    assert plan.kept == reference.plan.kept
    assert plan.removed_modules == reference.plan.removed_modules
    assert plan.attributes == reference.plan.attributes
    assert read_manifest(tmp_path / "out").end_state == ["physical"]
    loaded = pk.load(tmp_path / "out").eval()
    _assert_equal_models(reference.model, loaded)
    x = batches(1, seed=5)[0]
    expected = outputs(reference.model, x)
    assert torch.equal(outputs(loaded, x), expected)
    params_before = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(
        str(llama_dir)).parameters())
    removed = sum(total - kept for kept, total in result.layers.values())
    assert params_before - removed == sum(p.numel() for p in loaded.parameters())


def test_uniform_result_loads_with_from_pretrained(llama_dir: Path, tmp_path: Path) -> None:
    spec = CASES["activation-heads-neurons-block"]
    calib = _calibration(spec)
    reference = in_memory(llama_dir, spec, calib, torch.float32)
    prune_pretrained(llama_dir, spec, calibration=calib, out=tmp_path / "out",
                     dtype=torch.float32, offload_activations=True)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    assert hf.config.num_hidden_layers == 2 and hf.config.num_attention_heads == 2
    x = batches(1, seed=5)[0]
    assert torch.equal(outputs(hf, x), outputs(reference.model, x))


def test_per_layer_heads_load_with_pk_load_only(llama_dir: Path, tmp_path: Path) -> None:
    """The config cannot give two head counts: from_pretrained refuses the shapes."""
    spec = CASES["explicit-heads-per-layer"]
    prune_pretrained(llama_dir, spec, out=tmp_path / "out", dtype=torch.float32)
    with pytest.raises(RuntimeError, match="mismatch"):
        transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))


def test_head_count_transformers_refuses_still_loads_with_pk_load(tmp_path: Path) -> None:
    """6 heads of width 8 run fine, but transformers wants the hidden size (64) to divide
    by the head count: the config is written unvalidated and pk.load rebuilds the model."""
    src = save_checkpoint(llama_config(num_attention_heads=8, num_key_value_heads=2),
                          tmp_path / "src")
    spec = pk.TransformerStructured(heads=0.25)
    reference = in_memory(src, spec, None, torch.float32)
    prune_pretrained(src, spec, out=tmp_path / "out")
    loaded = pk.load(tmp_path / "out").eval()
    assert loaded.config.num_attention_heads == 6
    _assert_equal_models(reference.model, loaded)
    with pytest.raises(Exception, match="not a multiple of the number of attention heads"):
        transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))


def test_ignored_block_keeps_its_width(llama_dir: Path, tmp_path: Path) -> None:
    spec = pk.TransformerStructured(neurons=0.5)
    ignore = ["model.layers.1"]
    reference = in_memory(llama_dir, spec, None, torch.float32, ignore=ignore)
    result = prune_pretrained(llama_dir, spec, out=tmp_path / "out", dtype=torch.float32,
                              ignore=ignore)
    assert result.skipped == {"model.layers.1": "ignored"}
    loaded = pk.load(tmp_path / "out").eval()
    _assert_equal_models(reference.model, loaded)
    assert loaded.model.layers[1].mlp.up_proj.out_features == 128
    assert loaded.model.layers[0].mlp.up_proj.out_features == 64


def test_gpt2_tied_head_bfloat16(tmp_path: Path) -> None:
    src = save_checkpoint(gpt2_config(), tmp_path / "src", shard="10MB", cls="GPT2LMHeadModel")
    spec = pk.TransformerStructured(neurons=0.25, layers=1, importance="activation")
    calib = batches()
    model = transformers.GPT2LMHeadModel.from_pretrained(str(src), dtype=torch.bfloat16)
    reference = pk.prune(model.eval(), spec, calibration=calib)
    prune_pretrained(src, spec, calibration=calib, out=tmp_path / "out", dtype=torch.bfloat16)
    loaded = pk.load(tmp_path / "out").eval()
    assert loaded.transformer.h[0].mlp.c_fc.weight.dtype == torch.bfloat16
    _assert_equal_models(reference.model, loaded)
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "out"))
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()
    x = batches(1, seed=5)[0]
    assert torch.equal(outputs(hf, x), outputs(reference.model, x))


@pytest.mark.parametrize(("spec", "calib", "error", "match"), [
    (pk.TransformerStructured(heads=0.5, importance="taylor"), "yes", SpecError, "taylor"),
    (pk.TransformerStructured(heads=0.5, importance="activation"), None, CalibrationError,
     "calibration"),
    (pk.TransformerStructured(heads=0.5), "yes", SpecError, "does not use calibration"),
    (pk.TransformerStructured(heads=0.75), None, ShapeError, "key/value groups"),
])
def test_bad_input_leaves_nothing(spec: pk.TransformerStructured, calib: str | None,
                                  error: type[Exception], match: str, llama_dir: Path,
                                  tmp_path: Path) -> None:
    with pytest.raises(error, match=match):
        prune_pretrained(llama_dir, spec, calibration=batches() if calib else None,
                         out=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_overrides_are_refused(llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="overrides"):
        prune_pretrained(llama_dir, pk.TransformerStructured(neurons=0.5), out=tmp_path / "o",
                         overrides={"model.layers.0.mlp.up_proj": 0.5})
    assert list(tmp_path.iterdir()) == []


def test_progress_false_prints_nothing(llama_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    prune_pretrained(llama_dir, pk.TransformerStructured(neurons=0.5), out=tmp_path / "out",
                     progress=False)
    assert capsys.readouterr().err == ""
