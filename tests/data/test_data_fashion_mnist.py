"""Fashion-MNIST reader: real files read right; missing / corrupt files give DataError."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from prunekit.data import (
    DataBundle,
    TensorLoader,
    as_bundle,
    augment_batch,
    fashion_mnist,
    load_factory,
    load_split,
)
from prunekit.data.fashion_mnist import DEFAULT_DIR
from prunekit.errors import DataError

needs_data = pytest.mark.skipif(
    not (DEFAULT_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist",
)


@needs_data
def test_real_test_split_has_documented_size_classes_and_normalisation() -> None:
    split = load_split("test")
    assert split.images.shape == (10000, 1, 28, 28)
    assert split.images.dtype == torch.float32
    assert torch.bincount(split.labels).tolist() == [1000] * 10  # balanced
    # normalised with the training statistics: the test split is close to mean 0, std 1
    assert abs(float(split.images.mean())) < 0.05
    assert abs(float(split.images.std()) - 1.0) < 0.05


@needs_data
def test_subsets_are_fixed_by_seed_and_loader_covers_each_sample_once() -> None:
    a = fashion_mnist(train_limit=300, test_limit=200, seed=3)
    b = fashion_mnist(train_limit=300, test_limit=200, seed=3)
    assert a.info == {"train_samples": 300, "test_samples": 200}
    xa = torch.cat([x for x, _ in a.test])
    xb = torch.cat([x for x, _ in b.test])
    assert torch.equal(xa, xb) and xa.shape[0] == 200
    labels = torch.cat([y for _, y in a.train])
    assert labels.shape[0] == 300


def test_missing_folder_names_the_file_and_the_install_hint(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_split("train", tmp_path)
    assert "train-images-idx3-ubyte.gz" in info.value.message
    assert "apt-get install dataset-fashion-mnist" in (info.value.hint or "")


def _write_gz(path: Path, payload: bytes) -> None:
    with gzip.open(path, "wb") as fh:
        fh.write(payload)


def _copy_labels(tmp_path: Path) -> None:
    for name in ("t10k-labels-idx1-ubyte.gz",):
        if (DEFAULT_DIR / name).is_file():
            shutil.copy(DEFAULT_DIR / name, tmp_path / name)


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"not a gzip file at all", "corrupt"),
        (None, "magic"),
        (struct.pack(">iiii", 2051, 10000, 28, 28) + b"\0" * 100, "data bytes"),
        (struct.pack(">iiii", 2051, 5, 28, 28), "header shape"),
    ],
    ids=["not-gzip", "bad-magic", "truncated", "wrong-count"],
)
def test_corrupt_image_files_raise_data_error(tmp_path: Path, payload: bytes | None,
                                              words: str) -> None:
    target = tmp_path / "t10k-images-idx3-ubyte.gz"
    if payload is None:
        _write_gz(target, struct.pack(">iiii", 1234, 10000, 28, 28))
    elif words == "corrupt":
        target.write_bytes(payload)
    else:
        _write_gz(target, payload)
    _copy_labels(tmp_path)
    with pytest.raises(DataError) as info:
        load_split("test", tmp_path)
    assert words in info.value.message
    assert str(target) in info.value.message


def test_augmentation_keeps_shape_is_seeded_and_moves_pixels() -> None:
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    a = augment_batch(x, torch.Generator().manual_seed(0), pad=2)
    b = augment_batch(x, torch.Generator().manual_seed(0), pad=2)
    assert a.shape == x.shape and torch.equal(a, b)
    many = torch.stack([augment_batch(x, torch.Generator().manual_seed(s)) for s in range(8)])
    assert not all(torch.equal(m, x) for m in many)


def test_tensor_loader_shuffles_differently_each_epoch_but_reproducibly() -> None:
    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    first = [b[1].tolist() for b in TensorLoader(x, y, 4, shuffle=True, seed=1)]
    loader = TensorLoader(x, y, 4, shuffle=True, seed=1)
    again = [b[1].tolist() for b in loader]
    second_epoch = [b[1].tolist() for b in loader]
    assert first == again and first != second_epoch
    assert sorted(sum(first, [])) == list(range(10)) and len(loader) == 3


def test_user_datasets_and_dataloaders_become_a_bundle() -> None:
    ds = TensorDataset(torch.randn(10, 3), torch.randint(0, 2, (10,)))
    bundle = as_bundle((ds, DataLoader(ds, batch_size=4)), batch_size=5)
    assert isinstance(bundle, DataBundle)
    assert [x.shape[0] for x, _ in bundle.train] == [5, 5]
    assert [x.shape[0] for x, _ in bundle.test] == [4, 4, 2]
    assert as_bundle({"train": ds, "test": ds}).example_batch(2).shape == (2, 3)


def test_bad_user_factories_raise_data_error() -> None:
    with pytest.raises(DataError, match="package.module:factory"):
        load_factory("no_colon_here")
    with pytest.raises(DataError, match="cannot import"):
        load_factory("prunekit.data:does_not_exist")
    with pytest.raises(DataError, match="returned a int"):
        as_bundle(3)
    with pytest.raises(DataError, match="failed"):
        load_factory("prunekit.data:load_split")  # needs an argument: the call fails
