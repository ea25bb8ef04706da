"""Fashion-MNIST from the standard idx ``.gz`` files (no torchvision needed).

The Debian package ``dataset-fashion-mnist`` installs the four files in
``/usr/share/datasets/fashion-mnist/``; ``data_dir`` points anywhere else that holds them.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = (
    "install it with `apt-get install dataset-fashion-mnist`, or pass --data-dir DIR holding "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
    "t10k-labels-idx1-ubyte.gz"
)
MEAN = 0.2860
STD = 0.3530
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
_IMAGE_MAGIC = 2051
_LABEL_MAGIC = 2049


@dataclass(frozen=True)
class Split:
    """One split as tensors: normalised images (N, 1, 28, 28) float32 and labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def resolve_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The directory to read from: ``data_dir`` or the Debian package's location."""
    return Path(data_dir) if data_dir is not None else DEFAULT_DIR


def _read_gz(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"Fashion-MNIST file missing: {path}", INSTALL_HINT)
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot read {path}: {exc} (corrupt or truncated file?)", INSTALL_HINT
        ) from exc


def _parse_idx(
    raw: bytes, path: Path, magic: int, count: int, item_shape: tuple[int, ...]
) -> np.ndarray:
    header = 4 * (1 + 1 + len(item_shape))
    if len(raw) < header:
        raise DataError(f"{path}: too short for an idx header ({len(raw)} bytes)", INSTALL_HINT)
    dims = np.frombuffer(raw[:header], dtype=">i4")
    if int(dims[0]) != magic:
        raise DataError(f"{path}: magic number {int(dims[0])}, expected {magic}", INSTALL_HINT)
    expected = (count, *item_shape)
    if tuple(int(d) for d in dims[1:]) != expected:
        found = tuple(int(d) for d in dims[1:])
        raise DataError(f"{path}: header shape {found}, expected {expected}", INSTALL_HINT)
    size = int(np.prod(expected))
    if len(raw) - header != size:
        raise DataError(f"{path}: {len(raw) - header} data bytes, expected {size}", INSTALL_HINT)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(expected)


def load_split(split: str, data_dir: str | os.PathLike[str] | None = None) -> Split:
    """Read one split of Fashion-MNIST, validated and normalised.

    Args:
        split: ``"train"`` (60000 images) or ``"test"`` (10000 images).
        data_dir: directory holding the idx ``.gz`` files; default the Debian package's.

    Returns:
        A :class:`Split` with images normalised by mean 0.2860 / std 0.3530.

    Raises:
        DataError: missing, truncated or corrupt files (with the install hint).
    """
    if split not in _FILES:
        raise DataError(f"unknown split {split!r}", "use 'train' or 'test'")
    root = resolve_dir(data_dir)
    image_name, label_name, count = _FILES[split]
    image_path, label_path = root / image_name, root / label_name
    images = _parse_idx(_read_gz(image_path), image_path, _IMAGE_MAGIC, count, (28, 28))
    labels = _parse_idx(_read_gz(label_path), label_path, _LABEL_MAGIC, count, ())
    if int(labels.max()) >= len(CLASSES):
        bad = int(labels.max())
        raise DataError(f"{label_path}: label {bad} out of range 0..9", INSTALL_HINT)
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28)
    x = (x - MEAN) / STD
    y = torch.from_numpy(labels.astype(np.int64))
    return Split(x, y)
