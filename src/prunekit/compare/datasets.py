"""The data a comparison trains and evaluates on (images, or the sentence encoder's text)."""

from __future__ import annotations

from ..data import DataBundle, fashion_mnist, load_factory
from .minilm_budget import text_budget
from .minilm_data import minilm_text
from .minilm_model import TextTask, load_minilm
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


def minilm_task(settings: CompareSettings) -> TextTask:
    """all-MiniLM-L6-v2, its tokenizer, and the real text in the sizes of the run's budget.

    Args:
        settings: the run's settings (``quick`` picks the budget; ``seed`` the text order).

    Returns:
        The :class:`~prunekit.compare.minilm_model.TextTask`.

    Raises:
        MissingDependencyError: transformers or the model package is not installed.
        DataError: a text source is missing (names the package to install).
    """
    budget = text_budget(settings.quick)
    data = minilm_text(budget.calibration, budget.train, budget.held_out, seed=settings.seed)
    tokenizer, build, path = load_minilm()
    return TextTask(tokenizer=tokenizer, build=build, data=data, source=f"pretrained ({path})")
