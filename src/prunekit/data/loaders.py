"""Fast in-memory batch loaders for tensor datasets, with optional augmentation.

A :class:`TensorLoader` yields ``(images, labels)`` batches like a ``DataLoader`` but
slices one pre-loaded tensor, which is several times faster than per-sample
``__getitem__`` on small images. Shuffling and augmentation draw from a generator seeded
by ``seed`` and the epoch, so a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def augment_batch(
    images: torch.Tensor, gen: torch.Generator, pad: int = 2, fill: float = 0.0
) -> torch.Tensor:
    """Random crop with ``pad`` pixels of padding and random horizontal flip.

    Args:
        images: (N, C, H, W) batch.
        gen: random generator (determinism).
        pad: padding on each side before cropping back to (H, W).
        fill: value of the padding (the normalised background colour).

    Returns:
        A new (N, C, H, W) tensor.
    """
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad), value=fill)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    flip = torch.rand(n, generator=gen) < 0.5
    offsets = enumerate(zip(dy, dx, strict=True))
    crops = [padded[i, :, y : y + h, x : x + w] for i, (y, x) in offsets]
    out = torch.stack(crops)  # (N, C, H, W)
    out[flip] = out[flip].flip(-1)
    return out


class TensorLoader:
    """Iterate ``(inputs, labels)`` batches over in-memory tensors.

    Args:
        inputs: (N, ...) tensor.
        labels: (N,) tensor.
        batch_size: samples per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch.
        augment: apply :func:`augment_batch` (images only).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        fill: padding value for augmentation.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 128,
        *,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        fill: float = 0.0,
    ) -> None:
        if inputs.shape[0] != labels.shape[0]:
            raise ValueError(f"{inputs.shape[0]} inputs but {labels.shape[0]} labels")
        self.inputs = inputs
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.fill = fill
        self.epoch = 0

    def __len__(self) -> int:
        return (self.inputs.shape[0] + self.batch_size - 1) // self.batch_size

    @property
    def num_samples(self) -> int:
        return int(self.inputs.shape[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        n = self.inputs.shape[0]
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.inputs[idx]
            if self.augment:
                x = augment_batch(x, gen, fill=self.fill)
            yield x, self.labels[idx]
