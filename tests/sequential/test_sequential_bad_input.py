"""Bad input to prune_pretrained: a typed error naming the cause, raised before anything is
written (nothing at the output path, no temporary beside it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from seq_models import batches

import prunekit as pk
from prunekit.errors import (
    ArtifactExistsError,
    CalibrationError,
    FormatError,
    SpecError,
    WeightError,
)
from prunekit.sequential import prune_pretrained

SPEC = pk.Unstructured(sparsity=0.5, importance="wanda")


def _copy(llama_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(llama_dir, tmp_path / "src"))


def _run(src: Path, out: Path, spec: object = SPEC) -> None:
    prune_pretrained(src, spec, calibration=batches(), out=out)  # type: ignore[arg-type]


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))


def _shard_with(folder: Path, key: str) -> Path:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    return folder / index["weight_map"][key]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="is not a folder"):
        _run(tmp_path / "nowhere", tmp_path / "out")
    _nothing_written(tmp_path)


def test_folder_without_config(llama_dir: Path, tmp_path: Path) -> None:
    src = _copy(llama_dir, tmp_path)
    (src / "config.json").unlink()
    with pytest.raises(FormatError, match="no config.json"):
        _run(src, tmp_path / "out")
    _nothing_written(tmp_path)


def test_folder_with_pickle_weights_only(llama_dir: Path, tmp_path: Path) -> None:
    src = _copy(llama_dir, tmp_path)
    for path in src.glob("model*"):
        path.unlink()
    (src / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(FormatError, match=r"no model.safetensors.*pytorch_model.bin"):
        _run(src, tmp_path / "out")
    _nothing_written(tmp_path)


def test_index_naming_a_missing_shard(llama_dir: Path, tmp_path: Path) -> None:
    src = _copy(llama_dir, tmp_path)
    shard = _shard_with(src, "model.layers.1.mlp.up_proj.weight")
    shard.unlink()
    with pytest.raises(FormatError, match=shard.name):
        _run(src, tmp_path / "out")
    _nothing_written(tmp_path)


def test_truncated_shard(llama_dir: Path, tmp_path: Path) -> None:
    src = _copy(llama_dir, tmp_path)
    shard = _shard_with(src, "model.layers.2.mlp.down_proj.weight")
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(FormatError, match=f"cannot read .*{shard.name}"):
        _run(src, tmp_path / "out")
    _nothing_written(tmp_path)


def test_config_of_another_width(llama_dir: Path, tmp_path: Path) -> None:
    src = _copy(llama_dir, tmp_path)
    config = json.loads((src / "config.json").read_text())
    config["intermediate_size"] = 96
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(FormatError, match=r"shapes the config gives.*up_proj.*\[96, 64\]"):
        _run(src, tmp_path / "out")
    _nothing_written(tmp_path)


def test_shards_lacking_a_weight(llama_dir: Path, tmp_path: Path) -> None:
    src = _copy(llama_dir, tmp_path)
    key = "model.layers.2.self_attn.o_proj.weight"
    shard = _shard_with(src, key)
    tensors = load_file(str(shard))
    del tensors[key]
    save_file(tensors, str(shard), metadata={"format": "pt"})
    index_file = src / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    del index["weight_map"][key]
    index_file.write_text(json.dumps(index))
    with pytest.raises(FormatError, match=f"shards lack 1 weights.*{key}"):
        _run(src, tmp_path / "out")
    _nothing_written(tmp_path)


@pytest.mark.parametrize("spec", [
    pk.Unstructured(sparsity=0.5),
    pk.Unstructured(sparsity=0.5, importance="wanda", allocation="owl"),
    pk.Structured(sparsity=0.5),
])
def test_specs_this_path_does_not_run(spec: object, llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="prune_pretrained|allocation"):
        _run(llama_dir, tmp_path / "out", spec)
    _nothing_written(tmp_path)


def test_no_calibration(llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="needs calibration data"):
        prune_pretrained(llama_dir, SPEC, calibration=None, out=tmp_path / "out")
    _nothing_written(tmp_path)


def test_existing_output_is_left_alone(llama_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ArtifactExistsError, match="already exists"):
        _run(llama_dir, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_failure_in_a_late_block_leaves_nothing(llama_dir: Path, tmp_path: Path) -> None:
    """NaN weights in the last block stop the walk after earlier blocks were written: the
    half-written folder is removed, nothing appears at the output path."""
    src = _copy(llama_dir, tmp_path)
    key = "model.layers.2.mlp.gate_proj.weight"
    shard = _shard_with(src, key)
    tensors = load_file(str(shard))
    tensors[key][0, 0] = torch.nan
    save_file(tensors, str(shard), metadata={"format": "pt"})
    with pytest.raises(WeightError, match=key):
        _run(src, tmp_path / "out")
    _nothing_written(tmp_path)
