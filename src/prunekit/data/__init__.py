"""Data for ``prunekit compare``: Fashion-MNIST and the user data interface.

User data interface: a zero-argument factory (``--dataset package.module:factory``)
returning a :class:`DataBundle`, or a ``(train, test)`` pair / ``{"train": ..., "test": ...}``
mapping where each item is a ``torch.utils.data.Dataset`` of ``(input, label)`` pairs or an
iterable of ``(inputs, labels)`` batches such as a ``DataLoader``.
"""

from .bundle import DataBundle, as_bundle, fashion_mnist, load_factory
from .fashion_mnist import CLASSES, MEAN, STD, Split, load_split
from .loaders import TensorLoader, augment_batch

__all__ = [
    "DataBundle",
    "as_bundle",
    "fashion_mnist",
    "load_factory",
    "CLASSES",
    "MEAN",
    "STD",
    "Split",
    "load_split",
    "TensorLoader",
    "augment_batch",
]
