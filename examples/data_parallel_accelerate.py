"""Prune with calibration data and recover, data parallel through Hugging Face accelerate.

The same job as ``data_parallel.py``, with ``Accelerator.prepare`` wrapping the pruned model
and sharding the loader; prunekit's ``finetune`` then trains the prepared model::

    python -m accelerate.commands.launch --multi_gpu --num_processes 2 \\
        examples/data_parallel_accelerate.py
    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        examples/data_parallel_accelerate.py     # CPUs: Accelerator reads torchrun's setup
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from accelerate import Accelerator
from data_parallel import calibrate, parse, recover, training_data
from torch.utils.data import DataLoader


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv, __doc__)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # joins the launched job
    result = calibrate(args)  # calibration splits over the ranks accelerate started
    loader = DataLoader(training_data(args), batch_size=args.batch_size)
    model, loader = accelerator.prepare(result.model, loader)  # cut before prepare
    return recover(args, result, model, loader)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
