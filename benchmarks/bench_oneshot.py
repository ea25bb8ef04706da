"""How long do Wanda and SparseGPT take at 50% on all-MiniLM-L6-v2 with 128 calibration sentences?

Run:  .venv/bin/python benchmarks/bench_oneshot.py                 (2 threads, 3 repeats)
      .venv/bin/python benchmarks/bench_oneshot.py --threads 1 --repeats 1 --json

Times the whole ``pk.prune(model, spec, calibration=...)`` call (copying the model,
calibrating block by block, choosing masks, SparseGPT's reconstruction, checks), median of
``--repeats``. Calibration: 128 Debian fortunes quotations in batches of 32 (<=128 tokens).
Goals (issue 5): SparseGPT under 60 s, Wanda under 10 s on the 2-core machine. Also times
SparseGPT with ``reconstruct="dense"`` (and bias correction), which calibrates stage by stage.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from minilm_data import batches, fortunes, load_minilm

import prunekit as pk

SPECS = {
    "wanda": pk.Unstructured(sparsity=0.5, importance="wanda"),
    "sparsegpt": pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
    "sparsegpt, dense target": pk.Unstructured(sparsity=0.5, importance="sparsegpt",
                                               reconstruct="dense", bias_correction=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=128)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer, model = load_minilm()
    calibration = batches(tokenizer, fortunes()[: args.sentences], size=32)
    tokens = sum(int(b["attention_mask"].sum()) for b in calibration)
    results = {}
    for name, spec in SPECS.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            pk.prune(model, spec, calibration=calibration, ignore=["pooler"])
            times.append(time.perf_counter() - start)
        results[name] = {"median_s": statistics.median(times), "runs_s": times}
    report = {"model": "all-MiniLM-L6-v2", "sentences": args.sentences, "tokens": tokens,
              "threads": args.threads, "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "results": results}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"all-MiniLM-L6-v2, {args.sentences} calibration sentences ({tokens} tokens), "
          f"{args.threads} thread(s), torch {torch.__version__}")
    for name, r in results.items():
        runs = ", ".join(f"{t:.1f}" for t in r["runs_s"])
        print(f"{name:>23} 50%: {r['median_s']:.1f} s median  (runs: {runs})")


if __name__ == "__main__":
    main()
