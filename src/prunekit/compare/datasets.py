"""The data a comparison trains and evaluates on."""

from __future__ import annotations

from ..data import DataBundle, fashion_mnist, load_factory
from .settings import CompareSettings


def comparison_data(settings: CompareSettings) -> DataBundle:
    """Fashion-MNIST (subsets with ``quick``), or the batches of ``settings.dataset_ref``.

    Args:
        settings: the run's settings (dataset, data folder, seed, subsets).

    Returns:
        Training and test batches.

    Raises:
        DataError: the dataset is missing or corrupt, or the factory fails.
    """
    if settings.dataset_ref is not None:
        return load_factory(settings.dataset_ref, seed=settings.seed)
    return fashion_mnist(settings.data_dir, seed=settings.seed,
                         train_limit=settings.train_limit, test_limit=settings.test_limit)
