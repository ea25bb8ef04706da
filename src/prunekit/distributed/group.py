"""Who this process is in a ``torch.distributed`` job, and the model a wrapper holds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..errors import SpecError

_SINGLE: ContextVar[bool] = ContextVar("prunekit_single_process", default=False)


def initialized() -> bool:
    """True if ``torch.distributed`` is available and a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes in the default group (1 without one)."""
    return dist.get_world_size() if initialized() else 1


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if initialized() else 0


def is_main_process() -> bool:
    """True on rank 0, and in a process without a process group: the one that writes files."""
    return rank() == 0


def active() -> bool:
    """True if calibration splits its batches over ranks: a group of two or more processes
    is initialized and the caller is not inside :func:`single_process`."""
    return initialized() and world_size() > 1 and not _SINGLE.get()


@contextlib.contextmanager
def single_process() -> Iterator[None]:
    """Within this block, calibration ignores the process group: this rank runs every batch
    by itself and talks to no other rank (for a call made on one rank only).

    Example:
        >>> with single_process():
        ...     active()
        False
    """
    token = _SINGLE.set(True)
    try:
        yield
    finally:
        _SINGLE.reset(token)


def require_process_group(what: str) -> None:
    """Raise unless a default process group is initialized.

    Args:
        what: what needs it, for the message (``"distributed=True"``).

    Raises:
        SpecError: no process group.
    """
    if not initialized():
        raise SpecError(
            f"{what} needs torch.distributed, but no process group is initialized",
            "start the script with torchrun (or accelerate launch) and call "
            "torch.distributed.init_process_group() first, or leave distributed unset",
        )


def barrier() -> None:
    """Wait for every rank (nothing to wait for without a process group)."""
    if initialized():
        dist.barrier()


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` / ``torch.compile``
    wrappers (``model`` itself if it is not wrapped).

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> unwrap(nn.DataParallel(layer)) is layer
        True
    """
    inner = model
    while True:
        if isinstance(inner, (DistributedDataParallel, DataParallel)):
            inner = inner.module
            continue
        compiled = inner.__dict__.get("_modules", {}).get("_orig_mod")
        if isinstance(compiled, nn.Module) and type(inner).__name__ == "OptimizedModule":
            inner = compiled
            continue
        return inner


def is_wrapped(model: nn.Module) -> bool:
    """True if ``model`` is a ``DistributedDataParallel`` wrapper (gradients are averaged
    over the ranks in its backward)."""
    return isinstance(model, DistributedDataParallel)
