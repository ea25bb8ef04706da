"""Checking that every rank holds the same model, data, settings and plan.

Each rank hashes what it has; the hashes are all-gathered and compared with rank 0's, so
every rank sees the same disagreement and raises the same typed error, naming what differs
and on which ranks (rather than computing a plan of its own or waiting forever).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import PrunekitError
from .group import initialized

Disagreement = tuple[type[PrunekitError], str, str]  # (error class, what differs, hint)


def _feed(h: Any, value: Any) -> None:
    """Add ``value`` (tensors, mappings, sequences, plain values) to the hash ``h``."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(value.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, Mapping):
        h.update(b"M")
        for key in sorted(value, key=str):
            h.update(repr(key).encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _feed(h, item)
    elif value is None or isinstance(value, (str, int, float, bool, torch.dtype)):
        h.update(repr(value).encode())
    else:  # an object whose repr may hold its address: its type is what ranks can compare
        h.update(f"O{type(value).__module__}.{type(value).__qualname__}".encode())


def digest_batches(batches: Iterable[Any]) -> str:
    """A hash of every batch's structure, shapes, dtypes and values."""
    h = hashlib.sha256()
    _feed(h, list(batches))
    return h.hexdigest()


def digest_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """A hash of named tensors (a plan's keep-masks, scores): names, shapes, values."""
    h = hashlib.sha256()
    _feed(h, dict(tensors))
    return h.hexdigest()


def digest_model(model: nn.Module) -> str:
    """A hash of the model's state: every tensor's name, shape, dtype and a float64 sum and
    sum of squares computed on its own device (one small transfer, not the weights)."""
    names, sums = [], []
    for name, tensor in model.state_dict(keep_vars=True).items():
        t = tensor.detach()
        names.append(f"{name}{tuple(t.shape)}{t.dtype}")
        values = t.abs().double() if t.is_complex() else t.double()
        sums.append(torch.stack([values.sum(), values.pow(2).sum()]).cpu())
    h = hashlib.sha256()
    _feed(h, names)
    _feed(h, torch.cat(sums) if sums else torch.zeros(0))
    return h.hexdigest()


def check_same_on_every_rank(digests: Mapping[str, str],
                             explain: Mapping[str, Disagreement]) -> None:
    """Raise on every rank if any rank's digests differ from rank 0's.

    Args:
        digests: ``{what: this rank's hash}``, the same names on every rank, checked in
            order (the first disagreement is reported).
        explain: ``{what: (error class, description, hint)}`` for each name.

    Raises:
        PrunekitError: the class ``explain`` gives for the first name that differs, naming
            the ranks that disagree with rank 0.
    """
    if not initialized():
        return
    gathered: list[dict[str, str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, dict(digests))
    reference = gathered[0] or {}
    for what in digests:
        differ = [r for r, got in enumerate(gathered)
                  if (got or {}).get(what) != reference.get(what)]
        if differ:
            cls, description, hint = explain[what]
            ranks = ", ".join(str(r) for r in differ)
            plural = len(differ) > 1
            raise cls(f"{description} differ between ranks: rank{'s' if plural else ''} {ranks} "
                      f"disagree{'' if plural else 's'} with rank 0", hint)
