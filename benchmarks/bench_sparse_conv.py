"""Sparse-weight convolution (CSRConv2d) vs dense ``F.conv2d`` on the CPU, per layer and
end to end.

Prints (1) per layer, the median dense and CSRConv2d times and their ratio at 90% and 95%
per-layer magnitude sparsity, for the convolutions of the Fashion-MNIST ResNet (its
shipped baseline weights, at their real input shapes) and for ResNet-50-shaped bottleneck
convolutions (1x1 reduce, 3x3, 1x1 expand) at 56x56, 28x28, 14x14 and 7x7 (random
weights), with the median ratio of each group against the targets; (2) end to end, the
Fashion-MNIST ResNet pruned by global magnitude to 90% and 95% and converted by
``pk.to_sparse`` (convolutions swapped for CSRConv2d where their timing wins and the whole
converted model beats dense), vs the dense model in NCHW and in channels_last; the
speed-up is against the faster of the two.

Times are medians of interleaved rounds (``prunekit.sparse.dispatch.time_pair``); the ratio
is dense / sparse. The machine's load average is printed before and after: on a shared
machine, busy neighbours slow multi-threaded runs unevenly.

Run: .venv/bin/python benchmarks/bench_sparse_conv.py [--threads 2] [--batches 64,1]
     [--dtype float32] [--budget 1.0] [--skip-resnet50] [--skip-e2e] [--importance l1,lamp]
     [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import prunekit as pk
from prunekit.compare.baseline import load_checkpoint, shipped_files
from prunekit.sparse import conv_kernels, kernels
from prunekit.sparse.conv import CSRConv2d
from prunekit.sparse.dispatch import time_pair

SPARSITIES = (0.9, 0.95)
# ResNet-50 bottleneck convolutions: (in, out, kernel, stride) at each resolution
RESNET50 = {
    56: ((256, 64, 1), (64, 64, 3), (64, 256, 1)),
    28: ((512, 128, 1), (128, 128, 3), (128, 512, 1)),
    14: ((1024, 256, 1), (256, 256, 3), (256, 1024, 1)),
    7: ((2048, 512, 1), (512, 512, 3), (512, 2048, 1)),
}
TARGETS = {  # (batch, sparsity): minimum ratio
    "layer": {(64, 0.9): 1.6, (64, 0.95): 3.0},
    "e2e": {(64, 0.9): 1.4, (64, 0.95): 2.2, (1, 0.95): 1.3},
}


@dataclass
class Layer:
    """One convolution to time: where it comes from, the layer, the input shape (C, H, W)."""

    group: str
    name: str
    conv: nn.Conv2d
    shape: tuple[int, int, int]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmnist_baseline() -> nn.Module:
    model = pk.zoo.build("fmnist_resnet")
    load_checkpoint(model, shipped_files("fmnist_resnet"))
    return model.eval()


def input_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Input shape of every Conv2d on ``x``."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [
        module.register_forward_pre_hook(
            lambda mod, args, name=name: shapes.__setitem__(name, tuple(args[0].shape))
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return shapes


def layers() -> list[Layer]:
    found = []
    model = fmnist_baseline()
    for name, shape in input_shapes(model, torch.zeros(1, 1, 28, 28)).items():
        conv = model.get_submodule(name)
        assert isinstance(conv, nn.Conv2d)
        found.append(Layer("fmnist_resnet", name, conv, (shape[1], shape[2], shape[3])))
    torch.manual_seed(0)
    for size, convs in RESNET50.items():
        for c_in, c_out, k in convs:
            conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False).eval()
            found.append(Layer("resnet50", f"{k}x{k} {c_in}->{c_out} @{size}", conv,
                               (c_in, size, size)))
    return found


def pruned_copy(conv: nn.Conv2d, sparsity: float, dtype: torch.dtype) -> nn.Conv2d:
    """A copy of ``conv`` with its ``sparsity`` smallest-magnitude weights zeroed."""
    pruned = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                       conv.padding, conv.dilation, conv.groups, bias=conv.bias is not None)
    pruned.load_state_dict(conv.state_dict())
    with torch.no_grad():
        w = pruned.weight
        drop = int(w.numel() * sparsity)
        if drop:
            threshold = w.abs().flatten().kthvalue(drop).values
            w.mul_(w.abs() > threshold)
    return pruned.to(dtype).eval()


def dense_call(conv: nn.Conv2d, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """``F.conv2d`` with the layer's weight (what ``choose_conv_kernel`` times as dense)."""
    weight, bias = conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
    return lambda: F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation,
                            conv.groups)


def sparse_call(module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: module(x)


def ratio(
    dense: Callable[[], object], sparse: Callable[[], object], budget: float
) -> tuple[float, float]:
    """Median dense and sparse ms over interleaved rounds."""
    dense_s, sparse_s = time_pair(dense, sparse, torch.device("cpu"), budget_s=budget,
                                  max_rounds=200)
    return statistics.median(dense_s) * 1e3, statistics.median(sparse_s) * 1e3


def layer_rows(batch: int, dtype: torch.dtype, budget: float, skip_resnet50: bool
               ) -> list[dict[str, Any]]:
    rows = []
    for layer in layers():
        if skip_resnet50 and layer.group == "resnet50":
            continue
        x = torch.randn(batch, *layer.shape).to(dtype)
        for sparsity in SPARSITIES:
            conv = pruned_copy(layer.conv, sparsity, dtype)
            sparse = CSRConv2d.from_conv(conv)
            dense_ms, sparse_ms = ratio(dense_call(conv, x), sparse_call(sparse, x), budget)
            spec = sparse.spec()
            rows.append({
                "group": layer.group, "layer": layer.name, "batch": batch,
                "weight": "x".join(map(str, conv.weight.shape)), "stride": conv.stride[0],
                "input": "x".join(map(str, layer.shape)), "sparsity": sparsity,
                "block": conv_kernels.block_size(spec, batch, layer.shape[1], layer.shape[2]),
                "dense_ms": dense_ms, "sparse_ms": sparse_ms, "speedup": dense_ms / sparse_ms,
            })
            print(f"  {layer.group:<13} {layer.name:<26} {rows[-1]['weight']:<14} "
                  f"s{conv.stride[0]} {rows[-1]['input']:<10} {sparsity:>4.0%} "
                  f"B{rows[-1]['block']:<2} {dense_ms:9.3f} {sparse_ms:9.3f} "
                  f"{dense_ms / sparse_ms:6.2f}x", flush=True)
    return rows


def e2e_rows(batch: int, dtype: torch.dtype, budget: float, importance: str
             ) -> list[dict[str, Any]]:
    """The Fashion-MNIST ResNet pruned by a global ranking of ``importance`` scores
    (``l1``: global magnitude), through ``pk.to_sparse`` (each conv timed at its input
    shape, then the whole model against dense in its faster layout), timed against the
    dense model in NCHW and in its faster layout."""
    rows = []
    dense = fmnist_baseline().to(dtype)
    x = torch.randn(batch, 1, 28, 28).to(dtype)
    dense_cl = copy.deepcopy(dense).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    for sparsity in SPARSITIES:
        result = pk.prune(fmnist_baseline(), pk.Unstructured(sparsity=sparsity, scope="global",
                                                              importance=importance))
        pruned_dense = pk.finalize(result.model).to(dtype).eval()
        conversion = pk.to_sparse(pruned_dense, x)
        model = conversion.model.eval()
        convs = [row for row in conversion.layers if row.kind == "Conv2d"]
        with torch.no_grad():
            error_vs_pruned = float((model(x) - pruned_dense(x)).abs().max())
        dense_ms, sparse_ms = ratio(lambda: dense(x), lambda m=model: m(x), budget * 4)
        dense_cl_ms, sparse_ms_2 = ratio(lambda: dense_cl(x_cl), lambda m=model: m(x),
                                         budget * 4)
        best_dense = min(dense_ms, dense_cl_ms)
        sparse_med = statistics.median([sparse_ms, sparse_ms_2])
        swapped = [row.name for row in convs if row.kernel == "csr"]
        rows.append({
            "batch": batch, "sparsity": sparsity, "importance": importance,
            "dense_ms": dense_ms,
            "dense_channels_last_ms": dense_cl_ms, "sparse_ms": sparse_med,
            "speedup_vs_nchw": dense_ms / sparse_ms, "speedup": best_dense / sparse_med,
            "swapped": swapped, "convs": len(convs),
            "choices": [(row.name, row.kernel, row.reason) for row in convs],
            "whole_model": None if conversion.whole_model is None
            else conversion.whole_model.speedup,
            "max_abs_diff_vs_pruned_dense": error_vs_pruned,
        })
        print(f"  batch {batch:<3} global {importance} {sparsity:.0%}: dense NCHW "
              f"{dense_ms:8.3f} ms, channels_last {dense_cl_ms:8.3f} ms; converted "
              f"{sparse_med:8.3f} ms: "
              f"{best_dense / sparse_med:5.2f}x the faster dense ({dense_ms / sparse_ms:.2f}x "
              f"NCHW); {len(swapped)}/{len(convs)} convs CSR; |out - pruned dense| "
              f"{error_vs_pruned:.1e}", flush=True)
        for name, kernel, reason in rows[-1]["choices"]:
            print(f"      {name:<26} {kernel:<6} {reason}")
    return rows


def summary(rows: list[dict[str, Any]], key: str, group: str | None = None,
            field: str = "group") -> None:
    cells: dict[tuple[int, float], list[float]] = {}
    for r in rows:
        if group is None or r.get(field) == group:
            cells.setdefault((r["batch"], r["sparsity"]), []).append(r["speedup"])
    for (batch, sparsity), speedups in sorted(cells.items(), key=lambda c: (-c[0][0], c[0][1])):
        target = TARGETS[key].get((batch, sparsity))
        med = statistics.median(speedups)
        verdict = "" if target is None else (
            f"  target >= {target}x: {'met' if med >= target else 'MISSED'}")
        label = f"{group} " if group else ""
        print(f"  {label}batch {batch:<3} {sparsity:.0%}: median {med:.2f}x over "
              f"{len(speedups)} (min {min(speedups):.2f}x, max {max(speedups):.2f}x){verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="64,1")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of interleaved rounds per timed pair (at least 5 rounds)")
    parser.add_argument("--skip-resnet50", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--importance", default="l1",
                        help="end to end: global ranking(s) to prune by, comma-separated "
                             "(l1 = global magnitude; lamp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"device: CPU {cpu_name()} ({os.cpu_count()} logical CPUs), dtype {args.dtype}, "
          f"batches {batches}, threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"numba {'yes' if kernels.available() else 'MISSING (dense fallback)'}, "
          f"load average {os.getloadavg()[0]:.1f}")
    layer_results: list[dict[str, Any]] = []
    e2e_results: list[dict[str, Any]] = []
    for batch in batches:
        print(f"\nper layer, batch {batch} (median ms; B = samples interleaved)")
        print(f"  {'group':<13} {'layer':<26} {'weight':<14} {'':2} {'input':<10} "
              f"{'':>4} {'':3} {'dense':>9} {'sparse':>9} {'ratio':>7}")
        layer_results += layer_rows(batch, dtype, args.budget, args.skip_resnet50)
    print("\nper layer, median dense / sparse")
    for group in ("fmnist_resnet", "resnet50", None):
        summary(layer_results, "layer", group)
    if not args.skip_e2e:
        print("\nend to end, fmnist_resnet (global ranking, through pk.to_sparse; "
              "speed-up against the dense model in its faster layout)")
        rankings = args.importance.split(",")
        for importance in rankings:
            for batch in batches:
                e2e_results += e2e_rows(batch, dtype, args.budget, importance)
        for importance in rankings:
            summary(e2e_results, "e2e", importance, "importance")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({
            "cpu": cpu_name(), "threads": args.threads, "dtype": args.dtype,
            "layers": layer_results, "e2e": e2e_results}, indent=1, default=str))


if __name__ == "__main__":
    main()
