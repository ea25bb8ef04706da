"""Peer pruning methods on prunekit compare's baseline, with compare's recovery recipe.

Prunes the shipped Fashion-MNIST ResNet baseline (the one ``prunekit compare`` starts from)
with other libraries' methods, fine-tunes each with the very function and settings compare
gives its variants (``prunekit.compare.recovery.recover``: 1 epoch, SGD lr 0.02 Nesterov
cosine, weight decay 5e-4, batch 128, seed 0, the same batch order, no augmentation), and
prints one table: accuracy after pruning, after fine-tuning, parameters (total and nonzero)
and MACs per sample (what dense kernels compute).

Methods (``--variants``, comma-separated; default all):
  torch-l1-90, torch-l1-95  torch.nn.utils.prune.global_unstructured, L1, over every conv and
                            linear weight (90% / 95% of them zeroed)
  tp-l1-50, tp-l1-75        Torch-Pruning (pip install "prunekit[peers]"), MagnitudeImportance
                            p=1, the same channel ratio in every group (50% / 75%), the
                            classifier's outputs kept
  control                   the dense baseline fine-tuned the same way, nothing pruned

Run:
    .venv/bin/python benchmarks/bench_peers.py --threads 2
    .venv/bin/python benchmarks/bench_peers.py --quick --variants torch-l1-90,control
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from prunekit import zoo
from prunekit.compare import CompareSettings
from prunekit.compare.baseline import shipped_files
from prunekit.compare.datasets import comparison_data
from prunekit.compare.recovery import recover
from prunekit.compare.runner import load_dense
from prunekit.compare.settings import DEFAULT_MODEL
from prunekit.data import DataBundle
from prunekit.measure.accuracy import evaluate_accuracy
from prunekit.measure.counting import count_macs, count_nonzero_params, count_params

METHODS = ("torch-l1-90", "torch-l1-95", "tp-l1-50", "tp-l1-75", "control")


@dataclass
class Row:
    """One method's figures."""

    method: str
    acc_pruned: float
    acc_finetuned: float
    params: int
    nonzero: int
    macs: int
    seconds: float


def torch_global_l1(amount: float) -> Callable[[nn.Module, torch.Tensor], nn.Module]:
    """torch.nn.utils.prune.global_unstructured with L1 over every conv/linear weight."""

    def prune(model: nn.Module, example: torch.Tensor) -> nn.Module:
        from torch.nn.utils import prune as tprune

        weights = [(m, "weight") for m in model.modules()
                   if isinstance(m, (nn.Conv2d, nn.Linear))]
        tprune.global_unstructured(weights, pruning_method=tprune.L1Unstructured, amount=amount)
        return model

    return prune


def torch_pruning_l1(ratio: float) -> Callable[[nn.Module, torch.Tensor], nn.Module]:
    """Torch-Pruning: L1 magnitude, the same channel ratio in every group, head kept."""

    def prune(model: nn.Module, example: torch.Tensor) -> nn.Module:
        import torch_pruning as tp

        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
        importance = tp.importance.MagnitudeImportance(p=1)
        pruner = tp.pruner.MetaPruner(model, example, importance=importance,
                                      pruning_ratio=ratio, global_pruning=False,
                                      ignored_layers=head)
        pruner.step()
        return model

    return prune


PRUNERS: dict[str, Callable[[nn.Module, torch.Tensor], nn.Module] | None] = {
    "torch-l1-90": torch_global_l1(0.90),
    "torch-l1-95": torch_global_l1(0.95),
    "tp-l1-50": torch_pruning_l1(0.50),
    "tp-l1-75": torch_pruning_l1(0.75),
    "control": None,
}


def run_method(name: str, dense: nn.Module, data: DataBundle, settings: CompareSettings,
               example: torch.Tensor) -> Row:
    """Prune a copy of ``dense`` with ``name``, evaluate, fine-tune with compare's recipe."""
    start = time.perf_counter()
    model = copy.deepcopy(dense).to(memory_format=torch.contiguous_format).eval()
    prune = PRUNERS[name]
    if prune is not None:
        model = prune(model, example)
    acc_pruned = evaluate_accuracy(model, data.test)
    recover(model, data, settings, teacher=copy.deepcopy(dense),
            description=f"fine-tune {name}")
    acc = evaluate_accuracy(model, data.test)
    return Row(name, acc_pruned, acc, count_params(model), count_nonzero_params(model),
               count_macs(model, example), time.perf_counter() - start)


def _delta(row: Row, ref: Row | None) -> str:
    if ref is None or row is ref:
        return ""
    return f"{(row.acc_finetuned - ref.acc_finetuned) * 100:+.2f}"


def print_table(rows: list[Row], dense: Row) -> None:
    """The table: accuracy after pruning / fine-tuning, against dense and the control."""
    control = next((r for r in rows if r.method == "control"), None)
    print(f"{'method':<12} {'acc pruned %':>12} {'acc FT %':>8} {'vs dense pt':>11} "
          f"{'vs control pt':>13} {'params':>9} {'nonzero':>9} {'MACs':>7} {'seconds':>7}")
    for row in [dense, *rows]:
        pruned = "" if row is dense else f"{row.acc_pruned * 100:.2f}"
        print(f"{row.method:<12} {pruned:>12} {row.acc_finetuned * 100:>8.2f} "
              f"{_delta(row, dense):>11} {_delta(row, control):>13} {row.params:>9,} "
              f"{row.nonzero:>9,} {row.macs / 1e6:>6.1f}M {row.seconds:>7.0f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--variants", default=",".join(METHODS),
                        help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--quick", action="store_true",
                        help="compare --quick's subsets and 8 fine-tuning steps (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the setup and every row to this JSON file")
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.variants.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown --variants {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not shipped_files(DEFAULT_MODEL).exists():
        parser.error("the shipped baseline is missing from this prunekit installation")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        settings = CompareSettings(variants=(), out_dir=Path(out), quick=args.quick,
                                   seed=args.seed, threads=args.threads, progress=args.progress)
        data = comparison_data(settings)
        dense, card = load_dense(lambda: zoo.build(DEFAULT_MODEL), data, settings)
    example = next(iter(data.test))[0][:1].contiguous()
    recipe = settings.recovery()
    batch = getattr(data.train, "batch_size", "n/a")
    setup = {"device": "cpu", "dtype": "float32", "threads": torch.get_num_threads(),
             "torch": torch.__version__, "train_batch": batch,
             "train_samples": getattr(data.train, "num_samples", None),
             "test_samples": getattr(data.test, "num_samples", None),
             "recovery": recipe.to_dict(), "augment": settings.augment}
    print(f"device=cpu dtype=float32 threads={setup['threads']} torch={torch.__version__} "
          f"train batch={batch} train samples={setup['train_samples']} "
          f"test samples={setup['test_samples']}")
    print(f"baseline: {card['source']} {DEFAULT_MODEL} ({card.get('accuracy', 'n/a')} on the "
          f"full test set); recovery: {recipe.epochs} epoch(s), SGD lr {recipe.lr} Nesterov "
          f"cosine, weight decay {recipe.weight_decay}, max steps {recipe.max_steps}, "
          f"seed {recipe.seed}, augment {settings.augment}, distill {recipe.distill}")
    acc = evaluate_accuracy(dense, data.test)
    base = Row("dense", acc, acc, count_params(dense), count_nonzero_params(dense),
               count_macs(dense, example), 0.0)
    rows = []
    for name in args.methods:
        rows.append(run_method(name, dense, data, settings, example))
        print(f"done {name}: {rows[-1].acc_finetuned * 100:.2f}%", flush=True)
    print_table(rows, base)
    if args.json is not None:
        rows_out = [dataclasses.asdict(r) for r in [base, *rows]]
        args.json.write_text(json.dumps({"setup": setup, "rows": rows_out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
