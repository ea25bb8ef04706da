"""Which residual blocks to remove? Influence-chosen (greedy, one-shot) vs the last ones.

Run:  .venv/bin/python benchmarks/bench_depth.py                   (blocks 1..3, 2 threads)
      .venv/bin/python benchmarks/bench_depth.py --blocks 2 --test-limit 2000 --json

On the shipped Fashion-MNIST ResNet baseline (``prunekit compare``'s dense model), for each
block count and selection (``greedy``, ``oneshot``, ``last``) this prunes with
``pk.Depth``, measuring influence on the same calibration batches ``prunekit compare``
uses (the first 8 training batches), and reports, before any fine-tuning:

  removed       the blocks replaced by nn.Identity
  calib change  relative output change on the calibration batches (what selection minimises)
  test change   relative output change on 8 test batches (held out)
  acc           top-1 accuracy on the test set (``--test-limit``: on that many images)
  acc+bn        top-1 accuracy after recalibrating BatchNorm statistics on 8 training batches
  params        parameters left

No training happens here; the fine-tuned comparison is ``prunekit compare --variants
depth-2,depth-last2`` (docs/structured.md, "Depth").
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prunekit as pk
from prunekit.compare.baseline import load_checkpoint, shipped_files
from prunekit.compare.datasets import comparison_data
from prunekit.compare.pipeline import calibration_batches
from prunekit.compare.settings import CompareSettings
from prunekit.data import fashion_mnist
from prunekit.depth.influence import output_change, reference_outputs
from prunekit.measure.accuracy import evaluate_accuracy
from prunekit.recover import recalibrate_batchnorm
from prunekit.specs import DEPTH_SELECTIONS, Depth

MODEL = "fmnist_resnet"


def dense_model() -> nn.Module:
    """The shipped baseline, eval mode."""
    model = pk.zoo.build(MODEL)
    if load_checkpoint(model, shipped_files(MODEL)) is None:
        raise SystemExit(f"the shipped {MODEL} checkpoint is missing")
    return model.eval()


def held_out_change(dense: nn.Module, pruned: nn.Module, batches: list[torch.Tensor]) -> float:
    """Relative output change of ``pruned`` against ``dense`` on ``batches``."""
    reference = reference_outputs(dense, batches)
    return output_change(pruned, batches, reference, [])


def run_one(dense: nn.Module, blocks: int, selection: str, data: Any,
            calibration: list[torch.Tensor], test_inputs: list[torch.Tensor]) -> dict[str, Any]:
    """Prune ``blocks`` blocks by ``selection`` and measure the result before fine-tuning."""
    result = pk.prune(dense, Depth(blocks=blocks, selection=selection), calibration[0][:2],
                      calibration=calibration if selection != "last" else None)
    model = result.model.eval()
    row = {
        "blocks": blocks, "selection": selection, "removed": list(result.plan.removed_modules),
        "calib_change": output_change(model, calibration, reference_outputs(dense, calibration),
                                      []) if selection == "last" else result.change,
        "test_change": held_out_change(dense, model, test_inputs),
        "acc": evaluate_accuracy(model, data.test),
        "params": sum(p.numel() for p in model.parameters()),
    }
    recalibrated = copy.deepcopy(model)
    recalibrate_batchnorm(recalibrated, data.train, max_batches=len(calibration))
    row["acc_bn"] = evaluate_accuracy(recalibrated, data.test)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--selections", nargs="*", default=list(DEPTH_SELECTIONS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test-limit", type=int, default=None,
                        help="evaluate on this many test images (default: all 10,000)")
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dense = dense_model()
    data = comparison_data(CompareSettings(variants=(), out_dir=Path("unused")))
    if args.test_limit is not None:
        data = fashion_mnist(None, seed=0, test_limit=args.test_limit)
    calibration = calibration_batches(data.train)
    test_inputs = calibration_batches(data.test)
    rows = [{"blocks": 0, "selection": "dense", "removed": [], "calib_change": 0.0,
             "test_change": 0.0, "acc": evaluate_accuracy(dense, data.test),
             "acc_bn": None, "params": sum(p.numel() for p in dense.parameters())}]
    for blocks in args.blocks:
        for selection in args.selections:
            rows.append(run_one(dense, blocks, selection, data, calibration, test_inputs))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| blocks | selection | removed | calib change | test change | acc % | acc+bn % "
          "| params |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        bn = "" if r["acc_bn"] is None else f"{100 * r['acc_bn']:.2f}"
        print(f"| {r['blocks']} | {r['selection']} | {', '.join(r['removed'])} | "
              f"{r['calib_change']:.4f} | {r['test_change']:.4f} | {100 * r['acc']:.2f} | "
              f"{bn} | {r['params']:,} |")


if __name__ == "__main__":
    main()
