"""Prune with calibration data and recover, data parallel (DDP under torchrun).

Every rank runs this same script. prunekit splits the calibration batches over the ranks
and sums their statistics, so every rank computes the plan one process would; the pruned
(cut) model is then wrapped in DistributedDataParallel for recovery and rank 0 saves it::

    python -m torch.distributed.run --standalone --nproc_per_node 2 examples/data_parallel.py
    python examples/data_parallel.py        # one process: the same plan and result

``data_parallel_accelerate.py`` does the recovery through Hugging Face accelerate instead.
The model is the zoo's small transformer classifier on random tokens (a made-up task), so
the script runs in seconds on a CPU; put your own model and data in ``build`` and
``batches``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import prunekit as pk
import prunekit.distributed as pkd
from prunekit.recover import RecoveryConfig, finetune

log = logging.getLogger("data_parallel")


def parse(argv: Sequence[str] | None = None, description: str = __doc__) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--method", choices=["wanda", "sparsegpt"], default="sparsegpt",
                        help="one-shot pruning method (calibrated)")
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights removed")
    parser.add_argument("--steps", type=int, default=10, help="recovery steps")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per rank and step")
    parser.add_argument("--out", type=Path, default=Path("data-parallel-out"),
                        help="folder the pruned, recovered model is saved to (by rank 0)")
    return parser.parse_args(argv)


def build() -> torch.nn.Module:
    torch.manual_seed(0)  # the same model on every rank
    return pk.zoo.build("transformer")


def batches(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)  # the same data on every rank
    tokens = torch.randint(0, 1000, (n * size, 16), generator=gen)
    return tokens, tokens[:, 0] % 4


def calibrate(args: argparse.Namespace) -> pk.PruneResult:
    """One-shot pruning: the same calibration list on every rank; each runs its share."""
    tokens, _ = batches(8, 4, seed=1)
    spec = pk.Unstructured(sparsity=args.sparsity, importance=args.method)
    return pk.prune(build(), spec, calibration=list(tokens.split(4)))


def training_data(args: argparse.Namespace) -> TensorDataset:
    """Every rank's examples for every step (a loader gives each rank its share)."""
    return TensorDataset(*batches(args.steps, args.batch_size * pkd.world_size(), seed=2))


def recover(args: argparse.Namespace, result: pk.PruneResult, model: torch.nn.Module,
            loader: Any) -> dict[str, Any]:
    """Fine-tune the wrapped ``model`` on this rank's ``loader``; rank 0 saves it."""
    # masks hold the pruned weights at zero; keep_zeros=False lets the zoo model's
    # zero-initialised position table train (see prunekit.recover.zeros)
    report = finetune(model, loader, RecoveryConfig(max_steps=args.steps, lr=0.05),
                      progress=False, keep_zeros=False)
    folder = pkd.save(model, args.out, overwrite=True)  # rank 0 writes, the others wait
    summary = {"rank": pkd.rank(), "ranks": pkd.world_size(), "steps": report.steps,
               "loss": report.losses[-1], "sparsity": result.summary().sparsity,
               "saved": folder}
    if pkd.is_main_process():
        log.info("%s", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if "RANK" in os.environ and not dist.is_initialized():  # started by torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    result = calibrate(args)
    data = training_data(args)
    sampler = DistributedSampler(data, shuffle=False) if dist.is_initialized() else None
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler)
    model = DistributedDataParallel(result.model) if dist.is_initialized() else result.model
    summary = recover(args, result, model, loader)  # cut before wrapping, as here
    if dist.is_initialized():
        dist.destroy_process_group()
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
