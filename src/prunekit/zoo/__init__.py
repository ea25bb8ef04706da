"""In-repo zoo of small reference models, registered by name.

Example:
    >>> from prunekit import zoo
    >>> model = zoo.build("lenet")
    >>> model(zoo.example_inputs("lenet")).shape
    torch.Size([2, 10])
"""

from . import blocks, convnets, transformers  # noqa: F401  (registers the models)
from .registry import build, entry, example_inputs, names, register

__all__ = ["build", "entry", "example_inputs", "names", "register"]
