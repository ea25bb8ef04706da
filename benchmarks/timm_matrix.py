"""The timm matrix as a Markdown table: each architecture's outcome at 50% channel sparsity.

For every case of ``tests/timm/timm_cases.py`` (random weights, the small inputs listed
there): ``pk.prune(model, pk.Structured(sparsity=0.5), x)``, then parameters and MACs before
and after, or the typed error that refused the model (nothing was changed). The table of
``docs/timm.md`` is this script's output; the tests in ``tests/timm`` check each outcome.

Run:
    .venv/bin/python benchmarks/timm_matrix.py [--threads 1] [--names resnet10t ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import prunekit as pk
from prunekit.measure.counting import count_macs, count_params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "timm"))
from timm_cases import CASES, Case  # noqa: E402


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def _macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    # the MAC counter's module tracker fails on a parameter handed to a submodule (PiT)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        return count_macs(model, x)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def row(case: Case) -> str:
    """One table row: family, timm name, input, outcome, parameters and MACs."""
    model, x = case.build(), case.inputs()
    params, macs = count_params(model), _macs(model, x)
    where = f"{case.size} px"
    try:
        result = pk.prune(model, pk.Structured(sparsity=0.5), x)
    except pk.PrunekitError as exc:
        return (f"| {case.family} | `{case.name}` | {where} | refused: `{type(exc).__name__}` "
                f"({case.reason}) | {_millions(params)} | - | {_millions(macs)} | - |")
    after = result.model
    return (f"| {case.family} | `{case.name}` | {where} | pruned | {_millions(params)} | "
            f"{_millions(count_params(after))} | {_millions(macs)} | "
            f"{_millions(_macs(after, x))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--names", nargs="*", help="timm names (default: every case)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [c for c in CASES if not args.names or c.name in args.names]
    print("| family | timm model | input | outcome | params | params at 0.5 | MACs | "
          "MACs at 0.5 |")
    print("|---|---|---|---|---|---|---|---|")
    for case in cases:
        print(row(case), flush=True)


if __name__ == "__main__":
    main()
