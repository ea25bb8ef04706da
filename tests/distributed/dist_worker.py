"""One rank of the data-parallel tests: ``torchrun ... dist_worker.py OUT CASE,CASE,...``.

Runs each case (see dist_cases.py) and writes ``OUT/rank<r>.pt``: ``{case: its tensors}``,
or ``{case: {"error": class name, "message": ...}}`` for a prunekit error.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from dist_cases import CASES, saved

from prunekit.errors import PrunekitError


def main() -> None:
    out, names = Path(sys.argv[1]), sys.argv[2].split(",")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    results: dict[str, object] = {}
    for name in names:
        torch.manual_seed(0)
        try:
            results[name] = saved(out) if name == "save" else CASES[name]()
        except PrunekitError as exc:
            results[name] = {"error": type(exc).__name__, "message": str(exc)}
    torch.save(results, out / f"rank{dist.get_rank()}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
