"""Data-parallel helpers: calibration split over the ranks of a ``torch.distributed`` job,
statistics summed across them, plans checked equal, recovery under a DDP wrapper.

Calibration (Wanda, SparseGPT, Taylor importances) splits its batches over the ranks by
itself once a process group is initialized; recovery (:func:`prunekit.recover.finetune`,
:class:`prunekit.recover.RecoveryStep`, :func:`prunekit.recover.distill_outputs`) runs data
parallel when handed a ``DistributedDataParallel`` model. See ``docs/distributed.md``.
"""

from .agree import check_same_on_every_rank, digest_batches, digest_model, digest_tensors
from .group import (
    active,
    barrier,
    is_main_process,
    is_wrapped,
    rank,
    require_process_group,
    single_process,
    unwrap,
    world_size,
)
from .reduce import broadcast_buffers, mean_across_ranks, sum_across_ranks
from .save import save
from .shard import Shard, calibration_shard

__all__ = [
    "Shard",
    "active",
    "barrier",
    "broadcast_buffers",
    "calibration_shard",
    "check_same_on_every_rank",
    "digest_batches",
    "digest_tensors",
    "digest_model",
    "is_main_process",
    "is_wrapped",
    "mean_across_ranks",
    "rank",
    "require_process_group",
    "save",
    "single_process",
    "sum_across_ranks",
    "unwrap",
    "world_size",
]
