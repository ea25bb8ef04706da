"""Saving from a data-parallel job: rank 0 writes, every rank waits for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch import nn

from ..errors import PrunekitError
from .group import initialized, is_main_process, unwrap


def save(result_or_model: Any, path: str | Path, **kwargs: Any) -> Path:
    """:func:`prunekit.save` from every rank of a job: rank 0 writes, the others wait.

    A wrapped model (``DistributedDataParallel``, ``torch.compile``) is saved as the module
    it wraps, under its own state-dict keys. Without a process group this is
    :func:`prunekit.save` of the unwrapped model.

    Args:
        result_or_model: what :func:`prunekit.save` takes, or a wrapped module.
        path: the folder to create.
        **kwargs: passed to :func:`prunekit.save` (``overwrite=``, ``model_ref=``).

    Returns:
        The artefact folder, on every rank.

    Raises:
        PrunekitError: rank 0's save failed (rank 0 raises its own error, the other ranks
            a PrunekitError naming it), so no rank goes on as if the file were there.
    """
    from ..io.save import save as save_one  # late: prunekit.io imports much of prunekit

    target = unwrap(result_or_model) if isinstance(result_or_model, nn.Module) else result_or_model
    failure: BaseException | None = None
    if is_main_process():
        try:
            save_one(target, path, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after telling the others
            failure = exc
    if initialized():
        outcome = [None if failure is None else f"{type(failure).__name__}: {failure}"]
        dist.broadcast_object_list(outcome, src=0)
        if failure is None and outcome[0] is not None:
            raise PrunekitError(f"rank 0 could not save {path}: {outcome[0]}",
                                "fix the error rank 0 reports and save again")
    if failure is not None:
        raise failure
    return Path(path)
