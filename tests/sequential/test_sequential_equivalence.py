"""The sequential path gives the in-memory path's pruned model, and its output folder loads
both as a prunekit artefact and as a Hugging Face folder.

Oracle: ``pk.prune`` on the model ``from_pretrained`` loads. Both paths run the same
floating-point operations in the same order, so in float32 every weight and mask is
required to be equal exactly; outputs likewise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from seq_models import batches, in_memory, outputs, transformers

import prunekit as pk
from prunekit.io import read_manifest
from prunekit.io.state import logical_state
from prunekit.sequential import prune_pretrained

SPECS = {
    "sparsegpt": pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
    "wanda": pk.Unstructured(sparsity=0.5, importance="wanda"),
    "nm-sparsegpt": pk.NM(2, 4, importance="sparsegpt"),
    "nm-wanda": pk.NM(2, 4, importance="wanda"),
    "dense-target": pk.Unstructured(sparsity=0.6, importance="sparsegpt", reconstruct="dense"),
    "global-sparsegpt": pk.Unstructured(sparsity=0.6, importance="sparsegpt",
                                        allocation="global"),
    "global-wanda": pk.Unstructured(sparsity=0.7, importance="wanda", allocation="global"),
}


def _assert_same_state(expected: torch.nn.Module, got: torch.nn.Module) -> None:
    ref, new = logical_state(expected), logical_state(got)
    assert set(ref) == set(new)
    for key, tensor in ref.items():
        assert new[key].value.dtype == tensor.value.dtype, key
        assert torch.equal(new[key].value, tensor.value), key
        if tensor.mask is not None:
            assert new[key].mask is not None and torch.equal(new[key].mask, tensor.mask), key


@pytest.mark.parametrize("name", list(SPECS))
def test_weights_masks_and_outputs_equal_the_in_memory_path(
    name: str, llama_dir: Path, tmp_path: Path
) -> None:
    spec, calib = SPECS[name], batches()
    reference = in_memory(llama_dir, spec, calib, torch.float32)
    result = prune_pretrained(llama_dir, spec, calibration=calib, out=tmp_path / "out",
                              dtype=torch.float32)
    assert set(result.layers) == set(reference.plan.masks)  # lm_head included, as in memory
    for key, mask in reference.plan.masks.items():
        assert result.layers[key] == (int(mask.sum()), mask.numel()), key
    loaded = pk.load(tmp_path / "out").eval()
    _assert_same_state(reference.model, loaded)
    x = batches(1, seed=5)[0]
    expected = outputs(reference.model, x)
    assert torch.equal(outputs(loaded, x), expected)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    assert torch.equal(outputs(hf, x), expected)


def test_bfloat16_end_to_end(llama_dir: Path, tmp_path: Path) -> None:
    """Blocks computed in bf16 give the in-memory bf16 weights; the folder is stored in bf16
    and from_pretrained reproduces the in-memory model's outputs (pk.load, which casts
    buffers to the stored dtype, matches pk.save of the in-memory result)."""
    spec, calib = SPECS["sparsegpt"], batches()
    reference = in_memory(llama_dir, spec, calib, torch.bfloat16)
    prune_pretrained(llama_dir, spec, calibration=calib, out=tmp_path / "out",
                     dtype=torch.bfloat16)
    loaded = pk.load(tmp_path / "out").eval()
    _assert_same_state(reference.model, loaded)
    assert loaded.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    x = batches(1, seed=5)[0]
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    assert hf.dtype == torch.bfloat16
    assert torch.equal(outputs(hf, x), outputs(reference.model, x))
    saved = pk.load(pk.save(reference, tmp_path / "in-memory")).eval()
    assert torch.equal(outputs(loaded, x), outputs(saved, x))


def test_offloaded_activations_give_the_same_weights(llama_dir: Path, tmp_path: Path) -> None:
    spec, calib = SPECS["dense-target"], batches()
    for name, offload in (("kept", False), ("offloaded", True)):
        prune_pretrained(llama_dir, spec, calibration=calib, out=tmp_path / name,
                         offload_activations=offload)
    assert (tmp_path / "kept" / "model.safetensors").read_bytes() == (
        tmp_path / "offloaded" / "model.safetensors").read_bytes()


def test_ignored_head_is_copied_unchanged(llama_dir: Path, tmp_path: Path) -> None:
    spec, calib = SPECS["wanda"], batches()
    reference = in_memory(llama_dir, spec, calib, torch.float32, ignore=["lm_head"])
    result = prune_pretrained(llama_dir, spec, calibration=calib, out=tmp_path / "out",
                              ignore=["lm_head"])
    assert "lm_head.weight" not in result.layers and "lm_head" in result.skipped
    _assert_same_state(reference.model, pk.load(tmp_path / "out"))


@pytest.mark.parametrize("options", [{}, {"bias_correction": True}])
def test_gpt2_transposed_weights_biases_and_tied_head(
    options: dict[str, Any], gpt2_dir: Path, tmp_path: Path
) -> None:
    """GPT-2: Conv1D (in, out) weights, biases (corrected on request), tied head skipped."""
    spec, calib = pk.Unstructured(sparsity=0.5, importance="sparsegpt", **options), batches()
    reference = in_memory(gpt2_dir, spec, calib, torch.float32)
    result = prune_pretrained(gpt2_dir, spec, calibration=calib, out=tmp_path / "out")
    assert "lm_head.weight" not in result.layers
    loaded = pk.load(tmp_path / "out").eval()
    _assert_same_state(reference.model, loaded)
    x = batches(1, seed=5)[0]
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    assert torch.equal(outputs(hf, x), outputs(reference.model, x))


def test_output_folder_is_a_hugging_face_folder(llama_dir: Path, tmp_path: Path) -> None:
    result = prune_pretrained(llama_dir, SPECS["wanda"], calibration=batches(),
                              out=tmp_path / "out")
    names = {p.name for p in result.path.iterdir()}
    assert {"config.json", "generation_config.json", "manifest.json", "model.safetensors",
            "tokenizer.json"} <= names
    assert not {n for n in names if n.startswith("model-") or n.endswith(".index.json")}
    manifest = read_manifest(result.path)
    assert manifest.end_state == ["masked"]
    assert manifest.model["ref"] == "hf:LlamaForCausalLM"
    assert result.sparsity == pytest.approx(0.5)
    assert not list(tmp_path.glob(".out.*"))  # no temporary left beside it
