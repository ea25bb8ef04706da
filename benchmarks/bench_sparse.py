"""Sparse storage and sparse inference, measured side by side in one run.

Prints (1) bytes on disk of 90% / 95% unstructured and 2:4 models of large Linear layers
vs the dense safetensors file, (2) CPU latency of dense vs CSR Linear at 90% / 95% for
4096x4096 and 768x3072 weights at batch 64 and 1, with the layer ``pk.to_sparse`` picks
automatically, and (3) the load time of a saved artefact vs loading the dense safetensors.

Run: .venv/bin/python benchmarks/bench_sparse.py [--threads 2] [--json out.json] [--no-latency]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import prunekit as pk
from prunekit.sparse import CSRLinear, kernels

SHAPES = ((4096, 4096), (768, 3072))  # (out_features, in_features)


class LargeLayers(nn.Module):
    """Two large Linear layers (a 4096x4096 and a 768x3072 weight); only stored, not run."""

    def __init__(self) -> None:
        super().__init__()
        self.square = nn.Linear(4096, 4096)
        self.ffn = nn.Linear(3072, 768)


def build() -> nn.Module:
    torch.manual_seed(0)
    return LargeLayers()


def interleaved_ms(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median ms of each function, measured in rounds that run each once in a shuffled order
    (fair under drift, and no function always runs right after the same other one: torch's
    threads spin for a while after each op and slow whatever runs next on these 2 cores)."""
    times: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    rng = random.Random(0)
    with torch.inference_mode():
        for fn in fns:
            fn()
        for _ in range(repeats):
            rng.shuffle(order)
            for index in order:
                t0 = time.perf_counter()
                fns[index]()
                times[index].append(time.perf_counter() - t0)
    return [statistics.median(t) * 1e3 for t in times]


def disk_sizes(tmp: Path) -> list[dict[str, Any]]:
    rows = []
    dense = build()
    for dtype in (torch.float32, torch.float16):
        name = "fp32" if dtype == torch.float32 else "fp16"
        save_file({k: v.to(dtype).contiguous() for k, v in dense.state_dict().items()},
                  tmp / f"dense_{name}.safetensors")
    cases = [("90% unstructured", pk.Unstructured(sparsity=0.9), torch.float32),
             ("95% unstructured", pk.Unstructured(sparsity=0.95), torch.float32),
             ("2:4 (N:M)", pk.NM(n_keep=2, m=4), torch.float16)]
    for label, spec, dtype in cases:
        result = pk.prune(build(), spec)
        result.model.to(dtype)
        folder = pk.save(result, tmp / label.split()[0].replace(":", "of").replace("%", ""))
        if label.startswith("90%"):  # the same weights without masks, and as CSR layers
            pk.save(pk.finalize(result.model), tmp / "90_finalized")
            pk.save(pk.to_sparse(result.model, kernel="csr").model, tmp / "90_csr")
        name = "fp32" if dtype == torch.float32 else "fp16"
        dense_bytes = pk.artifact_bytes(tmp / f"dense_{name}.safetensors")
        stored = pk.artifact_bytes(folder)
        formats = sorted({t.format for t in pk.io.read_manifest(folder).tensors.values()})
        rows.append({"model": f"{label} {name}", "bytes": stored, "dense_bytes": dense_bytes,
                     "ratio": stored / dense_bytes, "formats": formats, "folder": str(folder)})
    return rows


def load_times(tmp: Path, folders: dict[str, str], repeats: int) -> dict[str, dict[str, float]]:
    """Loading into a freshly built model (build not timed), in rounds: the dense
    safetensors file, then ``pk.load`` of each artefact (with / without checksum).

    Returns per loader the median and minimum ms and the median over rounds of its time
    divided by the dense load's time *in the same round* (the steadiest figure on a shared
    machine: a busy spell slows both sides of a ratio alike).
    """
    def dense(model: nn.Module) -> None:
        model.load_state_dict(load_file(tmp / "dense_fp32.safetensors"))

    loaders: dict[str, Callable[[nn.Module], object]] = {"dense safetensors": dense}
    for label, folder in folders.items():
        loaders[label] = lambda m, f=folder: pk.load(f, build=m)
        loaders[f"{label}, verify=False"] = lambda m, f=folder: pk.load(f, build=m, verify=False)
    times: dict[str, list[float]] = {label: [] for label in loaders}
    for round_ in range(repeats + 1):
        for label, fn in loaders.items():
            model = build()
            t0 = time.perf_counter()
            fn(model)
            if round_:  # the first round warms caches
                times[label].append(time.perf_counter() - t0)
            del model
    dense_times = times["dense safetensors"]
    return {
        label: {
            "median_ms": statistics.median(t) * 1e3,
            "min_ms": min(t) * 1e3,
            "ratio": statistics.median(a / b for a, b in zip(t, dense_times, strict=True)),
        }
        for label, t in times.items()
    }


def latency_rows(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for out_f, in_f in SHAPES:
        for sparsity in (0.9, 0.95):
            lin = nn.Linear(in_f, out_f)
            pk.finalize(pk.prune(lin, pk.Unstructured(sparsity=sparsity), inplace=True).model)
            csr = CSRLinear.from_linear(lin)
            for batch in (64, 1):
                x = torch.randn(batch, in_f)
                auto = pk.to_sparse(nn.Sequential(lin), batch_size=batch)
                chosen = auto.model[0]
                calls = [partial(lin, x), partial(csr.torch_product, x), partial(csr, x),
                         partial(chosen, x)]
                dense_ms, torch_ms, csr_ms, auto_ms = interleaved_ms(calls, repeats)
                rows.append({"shape": f"{out_f}x{in_f}", "sparsity": sparsity, "batch": batch,
                             "dense_ms": dense_ms, "torch_csr_ms": torch_ms,
                             "torch_csr_speedup": dense_ms / torch_ms, "csr_ms": csr_ms,
                             "csr_speedup": dense_ms / csr_ms, "auto_kernel": auto.layers[0].kernel,
                             "auto_ms": auto_ms, "auto_speedup": dense_ms / auto_ms})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--no-latency", action="store_true",
                        help="only the bytes on disk and the load times")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device: CPU ({platform.processor() or platform.machine()}), dtype fp32 "
          f"(2:4 row: fp16), threads {torch.get_num_threads()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sizes = disk_sizes(tmp)
        print("\nbytes on disk (4096x4096 + 768x3072 Linear weights)")
        for r in sizes:
            print(f"  {r['model']:<22} {r['bytes']:>12,} B  vs dense {r['dense_bytes']:>12,} B"
                  f"  = {r['ratio']:.3f}x  ({', '.join(r['formats'])})")
        folders = {"pk.load 90% finalized": str(tmp / "90_finalized"),
                   "pk.load 90% masked": sizes[0]["folder"],
                   "pk.load 90% sparse-stored (CSR)": str(tmp / "90_csr")}
        loads = load_times(tmp, folders, max(3, args.repeats // 3))
    print(f"\nload time into a built model ({max(3, args.repeats // 3)} rounds; ratio = median "
          "over rounds of time / dense time in the same round)")
    print(f"  {'':<48} {'median ms':>9} {'min ms':>7} {'ratio':>6}")
    for label, row in loads.items():
        print(f"  {label:<48} {row['median_ms']:9.1f} {row['min_ms']:7.1f} {row['ratio']:5.2f}x")
    latency = [] if args.no_latency else latency_rows(args.repeats)
    if latency:
        print("\nLinear latency, CPU fp32 (median ms; x = dense / sparse; torch = torch.sparse.mm "
              f"alone, CSRLinear = compiled kernel from {kernels.MIN_ROWS} rows"
              f"{'' if kernels.available() else ' (numba missing: torch)'})")
        print(f"  {'weight':<10} {'sparsity':>8} {'batch':>5} {'dense':>8} {'torch':>8} "
              f"{'x':>5} {'CSRLinear':>9} {'x':>5}  {'auto':>6} {'auto ms':>8} {'auto x':>6}")
    for r in latency:
        print(f"  {r['shape']:<10} {r['sparsity']:>8.0%} {r['batch']:>5} {r['dense_ms']:>8.3f} "
              f"{r['torch_csr_ms']:>8.3f} {r['torch_csr_speedup']:>5.2f} "
              f"{r['csr_ms']:>9.3f} {r['csr_speedup']:>5.2f}  {r['auto_kernel']:>6} "
              f"{r['auto_ms']:>8.3f} {r['auto_speedup']:>6.2f}")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "sizes": sizes,
                                         "load": loads,
                                         "latency": latency}, indent=1))


if __name__ == "__main__":
    main()
