"""How long does selecting 90% global unstructured sparsity take on a 100M-parameter model?

Run:  .venv/bin/python benchmarks/bench_select.py            (defaults: 100M params, 1 thread)
      .venv/bin/python benchmarks/bench_select.py --threads 2 --repeats 5 --json

Stages timed (median of ``--repeats``; the model is built once, outside the timings):
  score   |w| of every targeted weight (prunekit.unstructured.target_scores)
  select  exact global k-th value selection -> keep-masks (prunekit.select.global_masks)
  plan    score + select + checks, as pk.prune does it (prunekit.unstructured.plan_masks)
  prune   the whole pk.prune(..., inplace=True) call, masks applied (on a fresh model each time)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import prunekit as pk
from prunekit.select.unstructured import count_removed, global_masks
from prunekit.targets import resolve_targets
from prunekit.unstructured import plan_masks, target_scores


def build_model(params: int, width: int, dtype: torch.dtype, seed: int) -> nn.Module:
    """A stack of bias-free ``width x width`` Linear layers with about ``params`` weights."""
    layers = max(1, round(params / (width * width)))
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        *(
            nn.utils.skip_init(nn.Linear, width, width, bias=False, dtype=dtype)
            for _ in range(layers)
        )
    )
    with torch.no_grad():
        for layer in model:
            layer.weight.normal_(0.0, width**-0.5, generator=generator)
    return model


def median_seconds(
    fn: Callable[[], object], repeats: int, setup: Callable[[], None] | None = None
) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (``setup()`` untimed before each)."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=float, default=100e6, help="weights (default 1e8)")
    parser.add_argument("--width", type=int, default=2048, help="Linear layer width")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    spec = pk.Unstructured(sparsity=args.sparsity, scope="global")
    model = build_model(int(args.params), args.width, dtype, seed=0)
    targets, skipped = resolve_targets(model)
    numel = sum(t.module.weight.numel() for t in targets)
    scores = target_scores(targets, "l1", seed=0)

    timings = {
        "score": median_seconds(lambda: target_scores(targets, "l1", seed=0), args.repeats),
        "select": median_seconds(lambda: global_masks(scores, args.sparsity), args.repeats),
        "plan": median_seconds(lambda: plan_masks(spec, targets, skipped, {}), args.repeats),
    }
    removed = sum(count_removed(m) for m in global_masks(scores, args.sparsity).values())
    if removed != round(args.sparsity * numel):
        raise SystemExit(f"selection is not exact: {removed} != round({args.sparsity} * {numel})")
    scores.clear()  # free the memory before the end-to-end timing

    def fresh() -> None:
        pk.finalize(model)  # the next pk.prune starts from a dense model again
        for layer in model:
            with torch.no_grad():
                layer.weight.normal_(0.0, args.width**-0.5)

    timings["prune"] = median_seconds(
        lambda: pk.prune(model, spec, inplace=True), args.repeats, setup=fresh
    )

    info = {
        "parameters": numel,
        "layers": len(targets),
        "sparsity": args.sparsity,
        "removed": removed,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    if args.json:
        print(json.dumps(info, indent=1))
        return
    print(
        f"{numel / 1e6:.1f}M weights in {len(targets)} layers, global sparsity {args.sparsity}: "
        f"{removed} removed (exact); device cpu, dtype {args.dtype}, {info['threads']} threads, "
        f"torch {torch.__version__}, median of {args.repeats}"
    )
    for stage, seconds in timings.items():
        print(f"  {stage:<7} {seconds:7.3f} s")
    met = "met" if timings["plan"] < 5 else "NOT met"
    print(f"goal: plan (score + select) < 5 s: {met}")


if __name__ == "__main__":
    main()
