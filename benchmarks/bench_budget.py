"""Budgeted structured pruning: targets met, latency measured, and the tool's own time.

Three sections (``--sections``, comma-separated; default all):

  targets   every torchvision model structured pruning supports (random weights, the input
            sizes of tests/torchvision): Params and MACs targets of 0.5 and 0.25 through
            ``pk.prune(model, pk.Structured(target=...))``; prints achieved / requested
            (counted with count_params / count_macs) and the seconds per call.
  latency   ``pk.Latency(0.5, batch=64)`` on the CPU for resnet50, mobilenet_v2,
            convnext_tiny (``--size`` pixels, 224 by default) and the Fashion-MNIST ResNet:
            the pruned model's latency over the dense one, both timed interleaved in this
            process (median of ``--rounds`` rounds), the table's time (``--fresh-table``
            times every layer again instead of reading the cache) and the whole call's.
  tool      ``MACs(0.5)`` on resnet50 (one 224x224 image): prunekit's whole call against
            Torch-Pruning's progressive loop (MetaPruner, L1, global, the pruning ratio
            stepped up by 0.02 until the MACs halve), alternated ``--repeats`` times, medians
            and their ratio. Skipped when torch-pruning (the ``peers`` extra) is missing.

Run:
    .venv/bin/python benchmarks/bench_budget.py --sections targets --threads 2
    .venv/bin/python benchmarks/bench_budget.py --sections latency --threads 2 --rounds 5
    .venv/bin/python benchmarks/bench_budget.py --sections tool --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn

import prunekit as pk
from prunekit.measure.counting import count_macs, count_params

SECTIONS = ("targets", "latency", "tool")
TARGETS = (("params", 0.5), ("params", 0.25), ("macs", 0.5), ("macs", 0.25))


def torchvision_cases() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    """The 27 models of tests/torchvision with their input shapes."""
    from torchvision import models as m

    seg = m.segmentation
    return {
        "alexnet": (m.alexnet, (1, 3, 64, 64)),
        "vgg11_bn": (m.vgg11_bn, (1, 3, 32, 32)),
        "squeezenet1_1": (m.squeezenet1_1, (1, 3, 64, 64)),
        "resnet18": (m.resnet18, (1, 3, 64, 64)),
        "resnet50": (m.resnet50, (1, 3, 64, 64)),
        "resnext50_32x4d": (m.resnext50_32x4d, (1, 3, 64, 64)),
        "wide_resnet50_2": (m.wide_resnet50_2, (1, 3, 64, 64)),
        "densenet121": (m.densenet121, (1, 3, 64, 64)),
        "googlenet": (lambda: m.googlenet(aux_logits=False, init_weights=True), (1, 3, 64, 64)),
        "inception_v3": (lambda: m.inception_v3(aux_logits=False, init_weights=True),
                         (1, 3, 299, 299)),
        "mobilenet_v2": (m.mobilenet_v2, (1, 3, 64, 64)),
        "mobilenet_v3_small": (m.mobilenet_v3_small, (1, 3, 64, 64)),
        "mobilenet_v3_large": (m.mobilenet_v3_large, (1, 3, 64, 64)),
        "mnasnet1_0": (m.mnasnet1_0, (1, 3, 64, 64)),
        "efficientnet_b0": (m.efficientnet_b0, (1, 3, 64, 64)),
        "efficientnet_v2_s": (m.efficientnet_v2_s, (1, 3, 64, 64)),
        "regnet_x_400mf": (m.regnet_x_400mf, (1, 3, 64, 64)),
        "regnet_y_400mf": (m.regnet_y_400mf, (1, 3, 64, 64)),
        "convnext_tiny": (m.convnext_tiny, (1, 3, 64, 64)),
        "vit_b_16": (m.vit_b_16, (1, 3, 224, 224)),
        "swin_t": (m.swin_t, (1, 3, 64, 64)),
        "swin_v2_t": (m.swin_v2_t, (1, 3, 64, 64)),
        "maxvit_t": (m.maxvit_t, (1, 3, 224, 224)),
        "shufflenet_v2_x1_0": (m.shufflenet_v2_x1_0, (1, 3, 64, 64)),
        "r3d_18": (m.video.r3d_18, (1, 3, 4, 32, 32)),
        "fcn_resnet50": (lambda: seg.fcn_resnet50(weights=None, weights_backbone=None),
                         (1, 3, 64, 64)),
        "deeplabv3_mobilenet_v3_large": (
            lambda: seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None),
            (1, 3, 64, 64)),
    }


def make_target(kind: str, fraction: float) -> pk.Params | pk.MACs:
    return pk.Params(fraction) if kind == "params" else pk.MACs(fraction)


def section_targets(names: list[str] | None) -> None:
    cases = torchvision_cases()
    print("targets: achieved / requested (count_params, count_macs), seconds per pk.prune")
    header = " ".join(f"{k}{f:<5}" for k, f in TARGETS)
    print(f"{'model':<30} {header:<48} seconds")
    worst = 0.0
    for name in names or list(cases):
        factory, shape = cases[name]
        torch.manual_seed(0)
        model, x = factory().eval(), torch.randn(shape)
        dense = {"params": count_params(model), "macs": count_macs(model, x)}
        cells, seconds = [], []
        for kind, fraction in TARGETS:
            start = time.perf_counter()
            try:
                result = pk.prune(model, pk.Structured(target=make_target(kind, fraction)), x)
            except pk.PrunekitError as exc:
                cells.append(f"{type(exc).__name__:>11}")
                print(f"  {name} {kind} {fraction}: {exc.message}")
                continue
            seconds.append(time.perf_counter() - start)
            after = count_params(result.model) if kind == "params" else count_macs(
                result.model, x)
            ratio = after / dense[kind] / fraction
            worst = max(worst, abs(ratio - 1))
            cells.append(f"{ratio:>11.4f}")
        print(f"{name:<30} {' '.join(cells):<48} {statistics.median(seconds):.1f}", flush=True)
    print(f"largest miss: {worst:.2%} (achieved / requested furthest from 1)")


def latency_cases(size: int) -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    from torchvision import models as m

    return {
        "resnet50": (m.resnet50, (1, 3, size, size)),
        "mobilenet_v2": (m.mobilenet_v2, (1, 3, size, size)),
        "convnext_tiny": (m.convnext_tiny, (1, 3, size, size)),
        "fmnist_resnet": (lambda: pk.zoo.build("fmnist_resnet"), (1, 1, 28, 28)),
    }


def section_latency(names: list[str] | None, size: int, rounds: int, batch: int,
                    fresh: bool) -> None:
    cases = latency_cases(size)
    print(f"latency: Latency(0.5, batch={batch}) on the CPU, threads={torch.get_num_threads()}, "
          f"median of {rounds} interleaved rounds (dense and pruned in this process)")
    print(f"{'model':<16} {'dense ms':>10} {'pruned ms':>10} {'ratio':>7} {'/0.5':>6} "
          f"{'re-cuts':>7} {'table s':>8} {'timed':>6} {'call s':>8} {'MACs':>6}")
    for name in names or list(cases):
        factory, shape = cases[name]
        torch.manual_seed(0)
        model, x = factory().eval(), torch.randn(shape)
        target = pk.Latency(0.5, batch=batch, rounds=rounds)
        with tempfile.TemporaryDirectory() as cache:
            saved = os.environ.get("PRUNEKIT_CACHE_DIR")
            if fresh:
                os.environ["PRUNEKIT_CACHE_DIR"] = cache
            try:
                start = time.perf_counter()
                result = pk.prune(model, pk.Structured(target=target), x)
                seconds = time.perf_counter() - start
            except pk.TargetError as exc:  # unreachable: the message names the least fraction
                print(f"{name:<16} refused: {exc.message}", flush=True)
                continue
            finally:
                if saved is None:
                    os.environ.pop("PRUNEKIT_CACHE_DIR", None)
                else:
                    os.environ["PRUNEKIT_CACHE_DIR"] = saved
        report = result.budget
        lat = report.latency
        print(f"{name:<16} {lat.dense_ms:>10.1f} {lat.pruned_ms:>10.1f} {lat.ratio:>7.3f} "
              f"{lat.ratio / 0.5:>6.3f} {report.refinements:>7} {lat.table_seconds:>8.1f} "
              f"{lat.table_timed:>6} {seconds:>8.1f} {report.macs_ratio:>6.3f}", flush=True)


def tp_progressive(model: nn.Module, x: torch.Tensor) -> int:
    """Torch-Pruning's loop: the global ratio stepped up until the MACs halve; returns MACs."""
    import torch_pruning as tp

    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=0.9, iterative_steps=45, global_pruning=True,
                                  ignored_layers=head)
    base, _ = tp.utils.count_ops_and_params(model, x)
    macs = base
    while macs > base * 0.5:
        pruner.step()
        macs, _ = tp.utils.count_ops_and_params(model, x)
    return int(macs)


def section_tool(repeats: int) -> None:
    from torchvision import models as m

    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        print("tool: torch-pruning is not installed (pip install 'prunekit[peers]'); skipped")
        return
    torch.manual_seed(0)
    model, x = m.resnet50().eval(), torch.randn(1, 3, 224, 224)
    dense = count_macs(model, x)
    times: dict[str, list[float]] = {"prunekit": [], "torch-pruning": []}
    reached: dict[str, float] = {}
    for _ in range(repeats):
        for name in times:
            work = copy.deepcopy(model)
            start = time.perf_counter()
            if name == "prunekit":
                out = pk.prune(work, pk.Structured(target=pk.MACs(0.5)), x).model
            else:
                tp_progressive(work, x)
                out = work
            times[name].append(time.perf_counter() - start)
            reached[name] = count_macs(out, x) / dense
    ours, theirs = statistics.median(times["prunekit"]), statistics.median(times["torch-pruning"])
    print(f"tool: resnet50 to MACs(0.5), 1x3x224x224, threads={torch.get_num_threads()}, "
          f"median of {repeats} alternated runs")
    for name in times:
        print(f"  {name:<14} {statistics.median(times[name]):7.1f} s  "
              f"(runs {', '.join(f'{t:.1f}' for t in times[name])}), MACs kept "
              f"{reached[name]:.4f}")
    print(f"  prunekit / torch-pruning: {ours / theirs:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--models", default="", help="comma-separated subset (targets, latency)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224, help="latency: torchvision input size")
    parser.add_argument("--batch", type=int, default=64, help="latency: batch size")
    parser.add_argument("--rounds", type=int, default=5, help="latency: interleaved rounds")
    parser.add_argument("--fresh-table", action="store_true",
                        help="latency: time every layer again (a fresh cache)")
    parser.add_argument("--repeats", type=int, default=3, help="tool: alternated runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    names = [n for n in args.models.split(",") if n] or None
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} device=cpu fp32")
    for section in args.sections.split(","):
        if section == "targets":
            section_targets(names)
        elif section == "latency":
            section_latency(names, args.size, args.rounds, args.batch, args.fresh_table)
        elif section == "tool":
            section_tool(args.repeats)
        else:
            parser.error(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")


if __name__ == "__main__":
    main()
