"""Time of structured pruning itself (analysis + selection + surgery + verification).

Prints, for torchvision resnet50, vit_b_16 and densenet121 (random weights, one 224x224
image) at 50% channel sparsity, layer scope: the analysis time (tracing and grouping) and the
total time of ``prunekit.prune`` (which includes its own analysis), median of a few runs, plus
parameters and MACs before and after.

Run:
    .venv/bin/python benchmarks/bench_structured.py [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn

import prunekit as pk
from prunekit.graph.groups import analyze
from prunekit.measure.counting import count_macs, count_params
from prunekit.measure.timing import median_iqr, repeated_ms


def models() -> dict[str, Callable[[], nn.Module]]:
    from torchvision import models as tv

    return {"resnet50": tv.resnet50, "vit_b_16": tv.vit_b_16, "densenet121": tv.densenet121}


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    return median_iqr(repeated_ms(fn, repeats))[0] / 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sparsity", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = pk.Structured(sparsity=args.sparsity)
    print(f"device=cpu dtype=float32 threads={torch.get_num_threads()} torch={torch.__version__} "
          f"input=1x3x224x224 sparsity={args.sparsity} repeats={args.repeats} (median)")
    print(f"{'model':<12} {'analysis s':>10} {'prune s':>8} {'params':>22} {'MACs (G)':>16}")
    for name, factory in models().items():
        torch.manual_seed(0)
        model = factory().eval()
        x = torch.randn(1, 3, 224, 224)
        pk.prune(model, spec, x)  # warm-up
        t_analysis = median_seconds(lambda m=model, x=x: analyze(m, x), args.repeats)
        t_prune = median_seconds(lambda m=model, x=x: pk.prune(m, spec, x), args.repeats)
        pruned = pk.prune(model, spec, x).model
        params = f"{count_params(model) / 1e6:.1f}M -> {count_params(pruned) / 1e6:.1f}M"
        macs = f"{count_macs(model, x) / 1e9:.2f} -> {count_macs(pruned, x) / 1e9:.2f}"
        print(f"{name:<12} {t_analysis:>10.2f} {t_prune:>8.2f} {params:>22} {macs:>16}")


if __name__ == "__main__":
    main()
