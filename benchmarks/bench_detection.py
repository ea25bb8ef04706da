"""Structured pruning of torchvision detectors: parameters and CPU latency, dense vs pruned.

For each detector (random weights, nothing downloaded, torchvision's default heads and
class counts): ``prunekit.detection.prune_detector`` at ``--sparsity`` (layer scope, L2),
then the parameters before and after and the latency of the whole forward (transform,
backbone, FPN, heads, post-processing) on one ``--size`` x ``--size`` image, batch 1,
float32, on the CPU. Dense and pruned are timed in alternation, ``--calls`` forwards each per
round; the ratio is the median over ``--rounds`` rounds of pruned / dense. Both run inside
``every_candidate`` so that they do the same work after the backbone: with random weights
the number of RPN proposals and of boxes otherwise depends on the weights (``boxes`` prints
how many each returns). SSD300 and SSDlite resize to their own 300 and 320 pixels.

Run:
    .venv/bin/python benchmarks/bench_detection.py --threads 2
    .venv/bin/python benchmarks/bench_detection.py --threads 2 --models ssd300_vgg16 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import prunekit as pk
from prunekit.detection import every_candidate, prune_detector
from prunekit.measure.counting import count_params


def detectors(size: int) -> dict[str, Callable[[], nn.Module]]:
    from torchvision.models import detection as d

    none = {"weights": None, "weights_backbone": None}
    sized = {**none, "min_size": size, "max_size": size}
    return {
        "fasterrcnn_resnet50_fpn": lambda: d.fasterrcnn_resnet50_fpn(**sized),
        "fasterrcnn_mobilenet_v3_large_fpn": lambda: d.fasterrcnn_mobilenet_v3_large_fpn(
            **sized),
        "retinanet_resnet50_fpn": lambda: d.retinanet_resnet50_fpn(**sized),
        "fcos_resnet50_fpn": lambda: d.fcos_resnet50_fpn(**sized),
        "ssd300_vgg16": lambda: d.ssd300_vgg16(**none),
        "ssdlite320_mobilenet_v3_large": lambda: d.ssdlite320_mobilenet_v3_large(**none),
        "maskrcnn_resnet50_fpn": lambda: d.maskrcnn_resnet50_fpn(**sized),
        "keypointrcnn_resnet50_fpn": lambda: d.keypointrcnn_resnet50_fpn(**sized),
    }


def seconds(model: nn.Module, image: list[torch.Tensor], calls: int) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(calls):
            model(image)
    return (time.perf_counter() - start) / calls


def interleaved(dense: nn.Module, pruned: nn.Module, image: list[torch.Tensor], rounds: int,
                calls: int) -> tuple[float, float, float]:
    """Median dense seconds, median pruned seconds, median per-round ratio pruned / dense."""
    seconds(dense, image, 1)  # warm-up
    seconds(pruned, image, 1)
    times: list[tuple[float, float]] = []
    for _ in range(rounds):
        times.append((seconds(dense, image, calls), seconds(pruned, image, calls)))
    ratio = statistics.median(p / d for d, p in times)
    return (statistics.median(d for d, _ in times), statistics.median(p for _, p in times),
            ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=320, help="R-CNN / RetinaNet / FCOS input")
    parser.add_argument("--sparsity", type=float, default=0.3)
    parser.add_argument("--round-to", type=int, default=1,
                        help="keep channel counts multiples of this (8 suits CPU kernels)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1, help="forwards per model per round")
    parser.add_argument("--models", nargs="*", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = detectors(args.size)
    print(f"device=cpu dtype=float32 batch=1 threads={torch.get_num_threads()} "
          f"torch={torch.__version__} input=3x{args.size}x{args.size} (SSD: own size) "
          f"sparsity={args.sparsity} round_to={args.round_to} rounds={args.rounds} "
          f"calls={args.calls} (medians)")
    print(f"{'model':<34} {'params':>16} {'dense ms':>9} {'pruned ms':>9} {'ratio':>6} "
          f"{'boxes':>8} {'prune s':>8}")
    for name in args.models or list(cases):
        torch.manual_seed(0)
        model = cases[name]().eval()
        image = [torch.rand(3, args.size, args.size)]
        start = time.perf_counter()
        spec = pk.Structured(sparsity=args.sparsity, round_to=args.round_to)
        pruned = prune_detector(model, spec, image).model
        took = time.perf_counter() - start
        with every_candidate(model), every_candidate(pruned), torch.no_grad():
            dense_s, pruned_s, ratio = interleaved(model, pruned.eval(), image, args.rounds,
                                                   args.calls)
            boxes = f"{len(model(image)[0]['boxes'])}/{len(pruned(image)[0]['boxes'])}"
        params = f"{count_params(model) / 1e6:.1f}M -> {count_params(pruned) / 1e6:.1f}M"
        print(f"{name:<34} {params:>16} {dense_s * 1e3:>9.0f} {pruned_s * 1e3:>9.0f} "
              f"{ratio:>6.2f} {boxes:>8} {took:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
