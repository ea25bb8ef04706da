"""Bad artefacts and bad targets: typed errors naming the problem, nothing half written."""

from __future__ import annotations

import importlib
import json
import os
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
import xxhash
from io_helpers import assert_same_outputs, masked_zoo

import prunekit as pk
from prunekit.errors import ArtifactExistsError, FormatError

SAVE_MODULE = importlib.import_module("prunekit.io.save")  # pk.io.save is the function


@pytest.fixture()
def artefact(tmp_path: Path):
    result, x = masked_zoo("mlp")
    return pk.save(result, tmp_path / "mlp"), result, x


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _rewrite_weights(folder: Path, edit) -> None:
    """Change the weights file and keep the manifest's size and checksum consistent."""
    tensors = safetensors.torch.load_file(folder / "model.safetensors")
    edit(tensors)
    safetensors.torch.save_file(tensors, folder / "model.safetensors")
    _resync(folder)


def _resync(folder: Path) -> None:
    weights = folder / "model.safetensors"
    _edit_manifest(folder, lambda d: d["weights"].update(
        bytes=weights.stat().st_size,
        **{a: SAVE_MODULE.file_digest(weights, a) for a in SAVE_MODULE.DIGEST_HEX_DIGITS}))


def test_existing_path_is_refused_and_left_untouched(artefact):
    folder, result, x = artefact
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    with pytest.raises(ArtifactExistsError, match="already exists"):
        pk.save(result, folder)
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before
    other, _ = masked_zoo("mlp", pk.Unstructured(sparsity=0.5))
    pk.save(other, folder, overwrite=True)
    assert_same_outputs(pk.load(folder), other.model, x)
    assert sorted(os.listdir(folder.parent)) == ["mlp"]  # no temp folders left


def test_interrupted_save_leaves_nothing_that_loads(tmp_path, monkeypatch, artefact):
    folder, result, x = artefact

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(SAVE_MODULE, "atomic_file", crash)
    with pytest.raises(KeyboardInterrupt):
        pk.save(result, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    with pytest.raises(KeyboardInterrupt):
        pk.save(masked_zoo("mlp", pk.Unstructured(sparsity=0.3))[0], folder, overwrite=True)
    assert_same_outputs(pk.load(folder), result.model, x)  # the old artefact is intact
    assert sorted(os.listdir(tmp_path)) == ["mlp"]


def test_newer_format_version(artefact):
    folder, *_ = artefact
    _edit_manifest(folder, lambda d: d.update(format_version=2))
    with pytest.raises(FormatError, match="newer") as info:
        pk.load(folder)
    assert "upgrade prunekit" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("tensors"), "lacks 'tensors'"),
        (lambda d: d.update(format="other"), "not a prunekit manifest"),
        (lambda d: d["tensors"]["1.weight"].update(dtype="float16"), "manifest says float16"),
        (lambda d: d["tensors"]["1.weight"].update(shape=[256, 783]), r"shape \[256, 783\]"),
        (lambda d: d["tensors"]["1.weight"].update(format="csr"), "missing"),
        (lambda d: d["tensors"]["1.weight"].update(shape="big"), "list of non-negative"),
        (lambda d: d["sparse_modules"].update({"0": "csr"}), "cannot run these layers sparse"),
        (lambda d: d["model"].update(ref="nosuch:thing"), "run code"),
        (lambda d: d["model"].update(ref="zoo:lenet"), "does not match"),
    ],
)
def test_hand_edited_manifest(artefact, edit, match):
    folder, *_ = artefact
    _edit_manifest(folder, edit)
    with pytest.raises(pk.PrunekitError, match=match):
        pk.load(folder)


def test_corrupt_truncated_or_missing_files(artefact):
    folder, *_ = artefact
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-10])
    with pytest.raises(FormatError, match="truncated"):
        pk.load(folder)
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    with pytest.raises(FormatError, match="checksum"):
        pk.load(folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        pk.load(folder)
    weights.unlink()
    (folder / "manifest.json").unlink()
    with pytest.raises(FormatError, match="missing"):
        pk.load(folder)
    with pytest.raises(FormatError, match="not an artefact folder"):
        pk.load(folder / "nope")


def test_missing_extra_and_reshaped_tensors(artefact):
    folder, *_ = artefact
    _rewrite_weights(folder, lambda t: t.update(extra=torch.zeros(2)))
    with pytest.raises(FormatError, match=r"unexpected \['extra'\]"):
        pk.load(folder)
    _rewrite_weights(folder, lambda t: (t.pop("extra"), t.pop("5.bias")))
    with pytest.raises(FormatError, match=r"missing \['5.bias'\]"):
        pk.load(folder)
    _rewrite_weights(folder, lambda t: t.update({"5.bias": torch.zeros(11)}))
    with pytest.raises(FormatError, match="stored shape"):
        pk.load(folder)


def test_factory_that_builds_another_architecture(artefact):
    folder, *_ = artefact
    with pytest.raises(FormatError, match="does not match") as info:
        pk.load(folder, build=lambda: pk.zoo.build("lenet"))
    assert "build=" in (info.value.hint or "")
    with pytest.raises(FormatError, match="not an nn.Module"):
        pk.load(folder, build=lambda: 3)


def test_non_tensor_extra_state_is_refused_before_writing(tmp_path):
    class WithExtra(torch.nn.Linear):
        def get_extra_state(self):
            return {"note": "not a tensor"}

        def set_extra_state(self, state):
            pass

    with pytest.raises(pk.UnsupportedModelError, match="not tensors"):
        pk.save(WithExtra(4, 4), tmp_path / "extra")
    assert not (tmp_path / "extra").exists()


def test_missing_parent_folders_are_created(tmp_path):
    result, x = masked_zoo("mlp")
    folder = pk.save(result, tmp_path / "a" / "b" / "mlp")
    assert_same_outputs(pk.load(folder), result.model, x)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FormatError, match="not a folder"):
        pk.save(result, tmp_path / "file" / "mlp")


def test_checksums_xxh3_by_default_the_others_on_request(artefact):
    folder, result, x = artefact
    weights = folder / "model.safetensors"
    stored = json.loads((folder / "manifest.json").read_text())["weights"]
    for algorithm, digits in (("xxh3_64", 16), ("crc32", 8), ("sha256", 64)):
        assert stored[algorithm] == SAVE_MODULE.file_digest(weights, algorithm)
        assert len(stored[algorithm]) == digits
        assert_same_outputs(pk.load(folder, verify=algorithm), result.model, x)
    assert stored["xxh3_64"] == xxhash.xxh3_64_hexdigest(weights.read_bytes())
    with pytest.raises(pk.PrunekitError, match="verify must be"):
        pk.load(folder, verify="md5")
    # older artefacts: without XXH3-64 the CRC-32 is checked, without both the SHA-256
    _edit_manifest(folder, lambda d: d["weights"].pop("xxh3_64"))
    _edit_manifest(folder, lambda d: d["weights"].update(sha256="0" * 64))
    assert_same_outputs(pk.load(folder), result.model, x)  # the crc32 is right
    _edit_manifest(folder, lambda d: d["weights"].pop("crc32"))
    with pytest.raises(FormatError, match="sha256 checksum"):
        pk.load(folder)
    with pytest.raises(FormatError, match="no crc32"):
        pk.load(folder, verify="crc32")
    _edit_manifest(folder, lambda d: d["weights"].update(crc32="xyz"))
    with pytest.raises(FormatError, match="crc32 must be"):
        pk.load(folder, verify=False)
    _edit_manifest(folder, lambda d: d["weights"].update(crc32="0" * 8, xxh3_64="0" * 15))
    with pytest.raises(FormatError, match="xxh3_64 must be 16"):
        pk.load(folder, verify=False)


def test_a_flipped_value_bit_is_caught_by_the_default_checksum(artefact):
    """Validation cannot see a changed float value; the checksum must."""
    folder, *_ = artefact
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    key = next(k for k in header if k.endswith("::values"))
    data[8 + length + header[key]["data_offsets"][0] + 2] ^= 0x01  # one value's mantissa bit
    weights.write_bytes(bytes(data))
    for verify in (True, "crc32"):
        with pytest.raises(FormatError, match="checksum"):
            pk.load(folder, verify=verify)
    pk.load(folder, verify=False)  # loads (wrong value): only a checksum can tell


def test_masked_tensor_in_a_sparse_layer_is_refused_before_writing(tmp_path):
    result, x = masked_zoo("transformer", pk.Unstructured(sparsity=0.95))
    conversion = pk.to_sparse(result, x, kernel={"head": "csr"})
    folder = pk.save(conversion, tmp_path / "sparse", model_ref="zoo:transformer")
    _edit_manifest(folder, lambda d: d["tensors"]["head.weight"].update(masked=True))
    with pytest.raises(FormatError, match="not parameters of dense layers"):
        pk.load(folder)


@pytest.mark.parametrize("bad", [None, "model.pt", {"1.weight": torch.zeros(2)}])
def test_save_refuses_what_is_neither_a_model_nor_a_result(bad, tmp_path):
    with pytest.raises(pk.SpecError, match="PruneResult") as info:
        pk.save(bad, tmp_path / "bad")
    assert type(bad).__name__ in str(info.value)
    assert list(tmp_path.iterdir()) == []
