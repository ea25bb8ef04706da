"""What a traced model may return: tensors, possibly nested in dicts, lists and tuples.

Channels that reach an output are pinned so the outputs keep their widths. An output the
trace cannot look into (a dataclass, a custom object, a string) would let those channels
be pruned unseen, so it is refused before anything is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import UnsupportedModelError

PLAIN = (int, float, bool, str, bytes, type(None))


def _is_cache(value: Any) -> bool:
    """A transformers key/value cache: state carried between calls, not an output."""
    return any(base.__name__ == "Cache" and base.__module__.startswith("transformers")
               for base in type(value).__mro__)


def _opaque(value: Any, path: str) -> tuple[str, str] | None:
    """``(path, type name)`` of the first leaf that is not a tensor or a plain value."""
    if isinstance(value, torch.Tensor) or _is_cache(value):
        return None
    if hasattr(value, "to_tuple") and not isinstance(value, Mapping):
        value = value.to_tuple()
    if isinstance(value, Mapping):
        for key in value:
            found = _opaque(value[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _opaque(item, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, PLAIN) and path != "output":
        return None
    return path, type(value).__name__


def check_outputs(output: Any, tensors: list[torch.Tensor]) -> None:
    """Refuse an output whose channels the trace cannot see.

    Args:
        output: what the model returned.
        tensors: the tensors found in it.

    Raises:
        UnsupportedModelError: the output holds something other than tensors, dicts, lists,
            tuples and plain values, or no tensor at all.
    """
    found = _opaque(output, "output")
    if found is None and tensors:
        return
    what = (f"{found[0]} is of type {found[1]}" if found is not None
            else "the output holds no tensor")
    raise UnsupportedModelError(
        f"structured pruning keeps the width of every output tensor, and {what}: prunekit "
        "cannot see which channels reach it",
        "make forward return tensors, or dicts / lists / tuples of tensors (wrap the model "
        "in a module that unpacks its output)",
    )
