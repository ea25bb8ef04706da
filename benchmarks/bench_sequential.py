"""Peak resident memory of one-shot pruning: block by block from disk vs in memory.

A Llama-style model (TinyLlama's shape: hidden 2048, MLP 5632, 32 heads with 4 key/value
heads, vocabulary 32000; as many blocks as ``--params`` asks) is built from its config with
random weights, in bfloat16, and saved sharded (``save_pretrained(max_shard_size=...)``)
into a temporary folder. Each path then runs in its own child process, on the CPU, one
thread, with the same calibration (``--samples`` random sequences of ``--length`` tokens):

  sequential  ``prunekit.sequential.prune_pretrained`` from the folder to a new folder;
  in-memory   ``from_pretrained(dtype=bfloat16)`` then ``pk.prune(..., inplace=True)``.

The blocks' Linear layers are pruned, ``lm_head`` is left alone as in the SparseGPT and Wanda
papers (``--prune-head`` prunes it too: the float32 copy of its ``vocab x hidden`` weight, then
dominates both paths' peaks).

Each child reports its own peak resident set (``VmHWM``) twice: right after importing
torch, transformers and prunekit (the fixed interpreter overhead, measured, not assumed)
and at the end; the parent also reads ``getrusage(RUSAGE_CHILDREN).ru_maxrss``.

Target for the sequential path: peak <= overhead + 25% of the model's bytes + the
calibration activations (inputs and outputs of one block, ``2 * samples * length * hidden``
values). SparseGPT's work for one block (its layers' float32 ``in x in`` Gram matrices,
each inverted in place, and a float32 copy of the weight being reconstructed) is printed
beside it: it grows with the width squared, not with the depth, so it weighs more on
narrow models.

Free disk (twice the model's bytes) and memory (about three times them for the in-memory
path) are checked first; use a smaller ``--params`` where they are short.

``--method structured`` removes a quarter of the heads and MLP neurons and two blocks
(``TransformerStructured``, activation importance): a scoring walk block by block, then every
tensor cut and written on its own.

Run:
    .venv/bin/python benchmarks/bench_sequential.py --params 1.1 --method sparsegpt
    .venv/bin/python benchmarks/bench_sequential.py --params 1.1 --method wanda --samples 4
    .venv/bin/python benchmarks/bench_sequential.py --params 1.1 --method structured
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HIDDEN, MLP, HEADS, KV_HEADS, VOCAB = 2048, 5632, 32, 4, 32000
GIB = 1 << 30


def block_params() -> int:
    head_dim = HIDDEN // HEADS
    attention = 2 * HIDDEN * HIDDEN + 2 * HIDDEN * KV_HEADS * head_dim
    return attention + 3 * HIDDEN * MLP + 2 * HIDDEN  # + two RMSNorms


def layers_for(params: float) -> int:
    """Blocks giving about ``params`` billion parameters (untied embeddings and head)."""
    return max(1, round((params * 1e9 - 2 * VOCAB * HIDDEN) / block_params()))


def model_bytes(layers: int) -> int:
    return 2 * (layers * block_params() + 2 * VOCAB * HIDDEN + HIDDEN)  # bfloat16


def config(layers: int) -> Any:
    import transformers

    return transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=MLP, num_hidden_layers=layers,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=2048,
        tie_word_embeddings=False, dtype="bfloat16")


def vm_hwm() -> int:
    """This process's peak resident set so far, in bytes (Linux ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def check_resources(workdir: Path, size: int) -> None:
    disk = shutil.disk_usage(workdir).free
    memory = available_memory()
    print(f"free disk {disk / GIB:.1f} GiB at {workdir}, available memory {memory / GIB:.1f} "
          f"GiB; model {size / GIB:.2f} GiB")
    if disk < 2.2 * size or memory < 3 * size:
        sys.exit("not enough disk or memory for this size: use a smaller --params")


def build(folder: Path, layers: int, shard: str) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    with torch.no_grad():
        model = transformers.LlamaForCausalLM._from_config(config(layers), dtype=torch.bfloat16)
    model.save_pretrained(str(folder), max_shard_size=shard)


def calibration(samples: int, length: int) -> list[dict[str, Any]]:
    import torch

    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(1, VOCAB, (1, length), generator=generator),
             "attention_mask": torch.ones(1, length, dtype=torch.long)} for _ in range(samples)]


def spec_for(method: str) -> Any:
    """The spec of ``--method``: 50% unstructured, or a quarter of the heads and neurons and
    two blocks (ranked by influence) removed, all ranked on activations."""
    import prunekit as pk

    if method == "structured":
        return pk.TransformerStructured(heads=0.25, neurons=0.25, layers=2,
                                        importance="activation")
    return pk.Unstructured(sparsity=0.5, importance=method)


def child(args: argparse.Namespace) -> None:
    import torch
    import transformers

    import prunekit as pk
    from prunekit.sequential import prune_pretrained

    torch.set_num_threads(1)
    assert transformers.LlamaForCausalLM is not None  # the modeling code, imported lazily
    overhead = vm_hwm()
    spec = spec_for(args.method)
    batches = calibration(args.samples, args.length)
    ignore = [] if args.prune_head or args.method == "structured" else ["lm_head"]
    start = time.perf_counter()
    if args.child == "sequential":
        prune_pretrained(args.src, spec, calibration=batches, out=args.out, ignore=ignore)
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(args.src),
                                                                  dtype=torch.bfloat16)
        pk.prune(model, spec, calibration=batches, inplace=True, ignore=ignore)
    print(json.dumps({"overhead": overhead, "peak": vm_hwm(),
                      "seconds": time.perf_counter() - start}))


def run_child(path: str, args: argparse.Namespace, src: Path, out: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", path, "--src", str(src), "--out", str(out),
               "--method", args.method, "--samples", str(args.samples),
               "--length", str(args.length)] + (["--prune-head"] if args.prune_head else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the {path} run failed:\n{done.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    found["ru_maxrss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return found


def sparsegpt_work_bytes() -> int:
    """SparseGPT's work for one block: its layers' float32 Gram matrices (each inverted in
    place) and the float32 copy (the weights are bfloat16) of the widest weight being
    reconstructed."""
    inputs = [HIDDEN] * 6 + [MLP]  # q, k, v, o, gate, up read the hidden size; down the MLP
    return 4 * sum(i * i for i in inputs) + 4 * HIDDEN * MLP


def report(results: dict[str, dict[str, Any]], size: int, args: argparse.Namespace) -> None:
    activations = 2 * args.samples * args.length * HIDDEN * 2  # bf16 block inputs + outputs
    for path, found in results.items():
        print(f"{path:>10}: peak {found['peak'] / GIB:.2f} GiB (overhead after imports "
              f"{found['overhead'] / GIB:.2f} GiB), {found['seconds']:.0f} s")
    seq = results["sequential"]
    target = seq["overhead"] + 0.25 * size + activations
    above = seq["peak"] - seq["overhead"]
    print(f"model {size / GIB:.2f} GiB; activations {activations / 2**20:.1f} MiB; "
          f"sequential above overhead {above / GIB:.2f} GiB = {above / size:.0%} of the model")
    if args.method == "sparsegpt":
        print(f"SparseGPT work of one block (float32 Gram matrices and weight copy): "
              f"{sparsegpt_work_bytes() / GIB:.2f} GiB")
    verdict = "met" if seq["peak"] <= target else "missed"
    print(f"target overhead + 25% of model + activations = {target / GIB:.2f} GiB: {verdict}")
    if "in-memory" in results:
        ratio = seq["peak"] / results["in-memory"]["peak"]
        print(f"sequential / in-memory peak: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=1.1, help="billions of parameters")
    parser.add_argument("--method", default="sparsegpt",
                        choices=("sparsegpt", "wanda", "structured"))
    parser.add_argument("--samples", type=int, default=4, help="calibration sequences")
    parser.add_argument("--length", type=int, default=64, help="tokens per sequence")
    parser.add_argument("--shard", default="500MB", help="max_shard_size of the saved model")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--prune-head", action="store_true", help="prune lm_head too")
    parser.add_argument("--skip-in-memory", action="store_true")
    parser.add_argument("--child", choices=("sequential", "in-memory"), help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    layers = layers_for(args.params)
    size = model_bytes(layers)
    what = ("TransformerStructured(heads=0.25, neurons=0.25, layers=2, activation)"
            if args.method == "structured" else f"{args.method} 50%")
    print(f"Llama-style model: {layers} blocks, {size / 2 / 1e9:.2f} B parameters, bfloat16; "
          f"{what}, {args.samples} x {args.length} calibration tokens, 1 thread")
    check_resources(args.workdir, size)
    work = Path(tempfile.mkdtemp(prefix="bench_sequential-", dir=args.workdir))
    try:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, "
                        f"{str(Path(__file__).parent)!r}); import bench_sequential as b; "
                        f"b.build(b.Path({str(work / 'src')!r}), {layers}, {args.shard!r})"],
                       check=True)
        print(f"built and saved in {time.perf_counter() - start:.0f} s")
        results = {"sequential": run_child("sequential", args, work / "src", work / "out")}
        if not args.skip_in_memory:
            results["in-memory"] = run_child("in-memory", args, work / "src", work / "none")
        report(results, size, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
