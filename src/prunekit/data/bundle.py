"""A train/test pair of batch iterables, and the factory hook for user data."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from .fashion_mnist import MEAN, STD, load_split
from .loaders import TensorLoader

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class DataBundle:
    """What a comparison trains and evaluates on.

    Attributes:
        train: iterable of ``(inputs, labels)`` batches, re-iterable once per epoch.
        test: iterable of ``(inputs, labels)`` batches for accuracy.
        name: shown in reports.
        info: free-form facts for the report (sizes, subsets).
    """

    train: Batches
    test: Batches
    name: str = "custom"
    info: dict[str, Any] = field(default_factory=dict)

    def example_batch(self, batch: int = 2) -> torch.Tensor:
        """The first ``batch`` test inputs (for tracing and shape checks)."""
        inputs, _ = next(iter(self.test))
        return inputs[:batch]


def _subset(split_x: torch.Tensor, split_y: torch.Tensor, limit: int | None, seed: int) -> tuple[
    torch.Tensor, torch.Tensor
]:
    if limit is None or limit >= split_x.shape[0]:
        return split_x, split_y
    idx = torch.randperm(split_x.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]
    return split_x[idx], split_y[idx]


def fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 128,
    seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
    augment: bool = True,
) -> DataBundle:
    """Fashion-MNIST as a :class:`DataBundle` (augmented, shuffled train; ordered test).

    Args:
        data_dir: directory of the idx ``.gz`` files; default the Debian package's.
        batch_size: training and evaluation batch size.
        seed: seed for shuffling, augmentation and subsets.
        train_limit / test_limit: use a fixed random subset of this many samples.
        augment: random crop (pad 2) + horizontal flip on training batches.

    Returns:
        A :class:`DataBundle`.
    """
    train, test = load_split("train", data_dir), load_split("test", data_dir)
    tx, ty = _subset(train.images, train.labels, train_limit, seed)
    vx, vy = _subset(test.images, test.labels, test_limit, seed + 1)
    background = (0.0 - MEAN) / STD
    return DataBundle(
        train=TensorLoader(tx, ty, batch_size, shuffle=True, augment=augment, seed=seed,
                           fill=background),
        test=TensorLoader(vx, vy, 256),
        name="Fashion-MNIST",
        info={"train_samples": int(tx.shape[0]), "test_samples": int(vx.shape[0])},
    )


class _Batched:
    """Wrap a map-style Dataset into re-iterable batches (deterministic shuffling)."""

    def __init__(self, dataset: Dataset[Any], batch_size: int, shuffle: bool, seed: int) -> None:
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.epoch = 0

    def __iter__(self) -> Iterator[Any]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=self.shuffle,
                            generator=gen)
        return iter(loader)

    def __len__(self) -> int:
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size  # type: ignore[arg-type]


def _as_batches(item: Any, role: str, batch_size: int, seed: int) -> Batches:
    if isinstance(item, Dataset) and not isinstance(item, torch.utils.data.IterableDataset):
        return _Batched(item, batch_size, shuffle=role == "train", seed=seed)
    if isinstance(item, Iterable):
        return item
    raise DataError(
        f"the dataset factory's {role} item is a {type(item).__name__}",
        "return torch Datasets of (input, label) or iterables of (inputs, labels) batches",
    )


def as_bundle(
    obj: Any, *, name: str = "custom", batch_size: int = 128, seed: int = 0
) -> DataBundle:
    """Turn what a user's dataset factory returned into a :class:`DataBundle`.

    Args:
        obj: a DataBundle, a ``(train, test)`` pair or a ``{"train", "test"}`` mapping;
            each item a Dataset of ``(input, label)`` or an iterable of batches (DataLoader).
        name: name for reports.
        batch_size: batch size used to wrap plain Datasets.
        seed: shuffling seed for wrapped Datasets.

    Returns:
        A :class:`DataBundle`.

    Raises:
        DataError: anything else.
    """
    if isinstance(obj, DataBundle):
        return obj
    if isinstance(obj, Mapping) and {"train", "test"} <= set(obj):
        train, test = obj["train"], obj["test"]
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        train, test = obj
    else:
        raise DataError(
            f"the dataset factory returned a {type(obj).__name__}",
            "return (train, test) or {'train': ..., 'test': ...} of Datasets or DataLoaders",
        )
    return DataBundle(_as_batches(train, "train", batch_size, seed),
                      _as_batches(test, "test", batch_size, seed), name=name)


def load_factory(ref: str, *, batch_size: int = 128, seed: int = 0) -> DataBundle:
    """Import ``package.module:factory``, call it and wrap the result (see :func:`as_bundle`).

    Raises:
        DataError: the reference does not import, the factory fails or returns junk.
    """
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise DataError(f"bad dataset reference {ref!r}", "write it as package.module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"cannot import dataset factory {ref!r}: {exc}",
                        "write it as package.module:factory, importable from here") from exc
    try:
        obj = factory()
    except Exception as exc:  # noqa: BLE001 - user code
        raise DataError(f"dataset factory {ref!r} failed: {type(exc).__name__}: {exc}") from exc
    return as_bundle(obj, name=attr, batch_size=batch_size, seed=seed)
