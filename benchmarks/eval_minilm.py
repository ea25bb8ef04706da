"""Quality and CPU latency of pruned all-MiniLM-L6-v2 (the real pretrained sentence encoder).

Run:  .venv/bin/python benchmarks/eval_minilm.py                 (1 thread, full table, ~20 min)
      .venv/bin/python benchmarks/eval_minilm.py --json out.json --skip-latency
      .venv/bin/python benchmarks/eval_minilm.py --skip-structured --sparse-epochs 0 \
          --only "bias correction"                       (a subset of the one-shot rows)

Calibration: 128 Debian fortunes quotations. Evaluation: 512 held-out sentences of gensim's
Lee news corpus (a different source). For each method it prints
  cos       mean cosine between pruned and dense sentence embeddings on the held-out sentences
  lee50     Spearman vs human similarity of the 50 Lee documents (1225 pairs)
  ws353     Spearman vs WordSim-353 human ratings (cosine of single-word embeddings)
  simlex    Spearman vs SimLex-999 human ratings
  enc params  parameters of the encoder layers (embeddings excluded; pooler unused and not pruned)
  sparsity    fraction removed over all pruned weights (the 36 encoder Linear layers; every
              method prunes the same ones: embeddings and pooler excluded)
Structured rows remove 25% of the heads and 25% of the MLP neurons of every layer
(activation importance from the calibration text), without and with a short recovery:
distilling the dense model's embeddings on 1024 other fortunes (AdamW, 2 epochs, through
``prunekit.recover.distill_outputs``).
A magnitude-ranked structured row shows what the activation ranking buys.
One-shot rows: magnitude, Wanda and SparseGPT at 50% and 2:4, with OWL allocation, with
bias correction, and SparseGPT reconstructing the dense model's layer outputs
(``reconstruct="dense"``, with bias correction; ``--calibration N --calibration-wordnet N``
calibrates on more text); SparseGPT 50% and 2:4 (or the ``--recover`` rows) are then distilled the
same way (masks fixed, ``--sparse-epochs``; ``--distill N`` fortunes, ``--distill-wordnet N``
WordNet usage examples, ``--no-sparse-dropout``, ``--sparse-cosine``), reported as separate
rows (the time is the distillation's alone).
Latency: median (IQR) ms of one forward pass at batch 1 and 32, sequence length 128.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import random
import re
import time
from typing import Any

import torch
from minilm_data import (
    batches,
    embed,
    fortunes,
    lee_documents,
    lee_sentences,
    load_minilm,
    sentence_embedding,
    word_pairs,
    wordnet_examples,
)
from scipy.stats import spearmanr

import prunekit as pk
from prunekit.apply.masks import effective_weight, is_masked
from prunekit.measure.timing import median_iqr, repeated_ms
from prunekit.recover import distill_outputs

SPARSE_SPECS = [
    ("magnitude 50%", pk.Unstructured(sparsity=0.5)),
    ("Wanda 50%", pk.Unstructured(sparsity=0.5, importance="wanda")),
    ("SparseGPT 50%", pk.Unstructured(sparsity=0.5, importance="sparsegpt")),
    ("Wanda 50%, OWL allocation", pk.Unstructured(sparsity=0.5, importance="wanda",
                                                  allocation="owl")),
    ("SparseGPT 50%, OWL allocation", pk.Unstructured(sparsity=0.5, importance="sparsegpt",
                                                      allocation="owl")),
    ("magnitude 2:4", pk.NM(2, 4)),
    ("Wanda 2:4", pk.NM(2, 4, importance="wanda")),
    ("SparseGPT 2:4", pk.NM(2, 4, importance="sparsegpt")),
    ("Wanda 50%, bias correction", pk.Unstructured(sparsity=0.5, importance="wanda",
                                                   bias_correction=True)),
    ("SparseGPT 50%, bias correction", pk.Unstructured(sparsity=0.5, importance="sparsegpt",
                                                       bias_correction=True)),
    ("Wanda 2:4, bias correction", pk.NM(2, 4, importance="wanda", bias_correction=True)),
    ("SparseGPT 2:4, bias correction", pk.NM(2, 4, importance="sparsegpt",
                                             bias_correction=True)),
    ("SparseGPT 50%, dense target", pk.Unstructured(sparsity=0.5, importance="sparsegpt",
                                                    reconstruct="dense", bias_correction=True)),
    ("SparseGPT 2:4, dense target", pk.NM(2, 4, importance="sparsegpt", reconstruct="dense",
                                          bias_correction=True)),
]
# One-shot results followed by a short recovery (masks fixed), reported as separate rows.
RECOVERED_SPECS = ["SparseGPT 50%", "SparseGPT 2:4"]
STRUCTURED = pk.TransformerStructured(heads=0.25, neurons=0.25, importance="activation")


class Evaluator:
    """Held-out fidelity and human-rated correlations of a model's sentence embeddings."""

    def __init__(self, tokenizer: Any, dense: Any, n_eval: int) -> None:
        self.held_out = batches(tokenizer, lee_sentences(n_eval), size=64)
        self.docs, self.doc_pairs = lee_documents()
        self.doc_batches = batches(tokenizer, self.docs, size=16, max_length=256)
        self.word_sets = {k: word_pairs(f) for k, f in
                          (("ws353", "wordsim353.tsv"), ("simlex", "simlex999.txt"))}
        words = sorted({w for pairs in self.word_sets.values() for a, b, _ in pairs
                        for w in (a, b)})
        self.word_index = {w: i for i, w in enumerate(words)}
        self.word_batches = batches(tokenizer, words, size=128, max_length=16)
        self.dense = embed(dense, self.held_out)

    def __call__(self, model: Any) -> dict[str, float]:
        emb = embed(model, self.held_out)
        docs = embed(model, self.doc_batches)
        words = embed(model, self.word_batches)
        result = {"cos": float((emb * self.dense).sum(-1).mean())}
        sims = [float(docs[i] @ docs[j]) for i, j, _ in self.doc_pairs]
        result["lee50"] = float(spearmanr(sims, [h for _, _, h in self.doc_pairs])[0])
        for name, pairs in self.word_sets.items():
            sims = [float(words[self.word_index[a]] @ words[self.word_index[b]])
                    for a, b, _ in pairs]
            result[name] = float(spearmanr(sims, [h for _, _, h in pairs])[0])
        return result


def encoder_params(model: Any) -> int:
    return sum(p.numel() for p in model.encoder.parameters())


def distill(student: Any, teacher: Any, train: list[Any], epochs: int, lr: float,
            dropout: bool = True, cosine: bool = False) -> Any:
    """Recover by matching the dense model's sentence embeddings (``distill_outputs``:
    squared distance, AdamW), with dropout on and a constant learning rate unless told."""
    distill_outputs(student, teacher, train, outputs=sentence_embedding, epochs=epochs, lr=lr,
                    cosine=cosine, dropout=dropout, progress=False)
    return student


def latency_ms(model: Any, inputs: dict[str, torch.Tensor], repeats: int) -> tuple[float, float]:
    """Median and IQR (ms) of one no-grad forward pass, after 3 warm-up runs."""
    with torch.no_grad():
        return median_iqr(repeated_ms(lambda: model(**inputs), repeats, warmup=3))


def latency_rows(tokenizer: Any, dense: Any, pruned: Any) -> list[dict[str, Any]]:
    texts = lee_sentences(32)
    rows = []
    for batch, repeats in ((1, 40), (32, 8)):
        inputs = dict(tokenizer(texts[:batch], padding="max_length", truncation=True,
                                max_length=128, return_tensors="pt"))
        d = latency_ms(dense, inputs, repeats)
        p = latency_ms(pruned, inputs, repeats)
        rows.append({"batch": batch, "dense_ms": d[0], "dense_iqr": d[1], "pruned_ms": p[0],
                     "pruned_iqr": p[1], "speedup": d[0] / p[0]})
    return rows


def sparse_rows(dense: Any, calibration: list[Any], evaluate: Evaluator, only: str | None,
                recover: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per one-shot spec; also the pruned models named in ``recover``."""
    rows, keep = [], {}
    for label, spec in SPARSE_SPECS:
        if only and not re.search(only, label) and label not in recover:
            continue
        start = time.perf_counter()
        result = pk.prune(dense, spec, calibration=calibration, ignore=["pooler"])
        masks = result.plan.masks.values()
        removed = sum(int((~m).sum()) for m in masks) / sum(m.numel() for m in masks)
        rows.append({"method": label, "seconds": time.perf_counter() - start,
                     "params": encoder_params(dense), "sparsity": removed,
                     **evaluate(result.model)})
        if label in recover:
            keep[label] = result.model
    return rows, keep


def recovered_rows(pruned: dict[str, Any], dense: Any, train: list[Any], evaluate: Evaluator,
                   args: argparse.Namespace) -> list[dict[str, Any]]:
    """The one-shot models after distillation (masks fixed: pruned weights stay zero)."""
    rows = []
    for label, model in pruned.items():
        start = time.perf_counter()
        recovered = distill(model, dense, train, args.sparse_epochs, args.lr,
                            dropout=not args.no_sparse_dropout, cosine=args.sparse_cosine)
        weights = [effective_weight(m) for m in recovered.encoder.modules() if is_masked(m)]
        removed = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
        rows.append({"method": f"{label} + distillation ({args.sparse_epochs} epochs, "
                               f"{args.sparse_epochs * len(train)} steps)",
                     "seconds": time.perf_counter() - start, "params": encoder_params(dense),
                     "sparsity": removed, **evaluate(recovered)})
    return rows


def structured_rows(dense: Any, calibration: list[Any], train: list[Any],
                    evaluate: Evaluator, args: argparse.Namespace) -> tuple[list[dict], Any]:
    """Magnitude and activation-ranked head/neuron removal, then distillation."""
    magnitude = pk.prune(dense, pk.TransformerStructured(heads=0.25, neurons=0.25)).model
    rows = [{"method": "structured 25% heads + 25% neurons, magnitude", "seconds": 0.0,
             "params": encoder_params(magnitude), **evaluate(magnitude)}]
    start = time.perf_counter()
    pruned = pk.prune(dense, STRUCTURED, calibration=calibration).model
    seconds = time.perf_counter() - start
    rows.append({"method": "structured 25% heads + 25% neurons, activation", "seconds": seconds,
                 "params": encoder_params(pruned), **evaluate(pruned)})
    start = time.perf_counter()
    recovered = distill(copy.deepcopy(pruned), dense, train, args.epochs, args.lr)
    rows.append({"method": f"  + distillation ({args.epochs} epochs)",
                 "seconds": time.perf_counter() - start, "params": encoder_params(recovered),
                 **evaluate(recovered)})
    return rows, pruned


def interleave(first: list[str], second: list[str]) -> list[str]:
    """``first[0], second[0], first[1], ...``, then the rest of the longer list."""
    mixed = [text for pair in zip(first, second, strict=False) for text in pair]
    shorter = min(len(first), len(second))
    return mixed + first[shorter:] + second[shorter:]


def evaluate_all(args: argparse.Namespace) -> dict[str, Any]:
    tokenizer, dense = load_minilm()
    texts, examples = fortunes(), wordnet_examples()
    calibration_texts = texts[: args.calibration]
    if args.calibration_wordnet:  # interleaved, so every batch sees both sources
        calibration_texts = interleave(calibration_texts, examples[: args.calibration_wordnet])
    calibration = batches(tokenizer, calibration_texts, size=32)
    train_texts = texts[args.calibration : args.calibration + args.distill]
    if args.distill_wordnet:  # mixed in, so every batch sees both sources
        start = args.calibration_wordnet  # disjoint from the calibration examples
        train_texts = train_texts + examples[start : start + args.distill_wordnet]
        random.Random(0).shuffle(train_texts)
    train = batches(tokenizer, train_texts, size=32, max_length=64)
    evaluate = Evaluator(tokenizer, dense, args.eval)
    rows = [{"method": "dense", "seconds": 0.0, "params": encoder_params(dense),
             **evaluate(dense)}]
    recover = args.recover.split(";") if args.recover else RECOVERED_SPECS
    recover = recover if args.sparse_epochs else []
    sparse, to_recover = sparse_rows(dense, calibration, evaluate, args.only, recover)
    rows += sparse
    if args.sparse_epochs:
        rows += recovered_rows(to_recover, dense, train, evaluate, args)
    latency = []
    if not args.skip_structured:
        structured, pruned = structured_rows(dense, calibration, train, evaluate, args)
        rows += structured
        latency = [] if args.skip_latency else latency_rows(tokenizer, dense, pruned)
    return {"threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "rows": rows,
            "latency": latency}


def print_report(report: dict[str, Any]) -> None:
    print(f"all-MiniLM-L6-v2, torch {report['torch']}, {report['threads']} thread(s)")
    print("| method | cos vs dense | Lee-50 | WS-353 | SimLex | encoder params | sparsity "
          "| prune s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        sparsity = f"{r['sparsity']:.4f}" if "sparsity" in r else "-"
        print(f"| {r['method']} | {r['cos']:.4f} | {r['lee50']:.3f} | {r['ws353']:.3f} | "
              f"{r['simlex']:.3f} | {r['params'] / 1e6:.2f}M | {sparsity} | "
              f"{r['seconds']:.1f} |")
    if report["latency"]:
        print("\n| batch (seq 128) | dense ms (IQR) | structured ms (IQR) | speed-up |")
        print("|---|---|---|---|")
        for r in report["latency"]:
            print(f"| {r['batch']} | {r['dense_ms']:.1f} ({r['dense_iqr']:.1f}) | "
                  f"{r['pruned_ms']:.1f} ({r['pruned_iqr']:.1f}) | {r['speedup']:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calibration", type=int, default=128, help="calibration sentences")
    parser.add_argument("--calibration-wordnet", type=int, default=0,
                        help="also calibrate on this many WordNet usage examples")
    parser.add_argument("--eval", type=int, default=512, help="held-out sentences")
    parser.add_argument("--epochs", type=int, default=2, help="distillation epochs")
    parser.add_argument("--lr", type=float, default=1e-4, help="distillation learning rate")
    parser.add_argument("--sparse-epochs", type=int, default=2,
                        help="distillation epochs after SparseGPT 50%% and 2:4 (0: none)")
    parser.add_argument("--distill", type=int, default=1024,
                        help="distillation sentences (other fortunes than the calibration ones)")
    parser.add_argument("--recover", help="semicolon-separated one-shot rows to distil "
                                          "(default: SparseGPT 50%%;SparseGPT 2:4)")
    parser.add_argument("--distill-wordnet", type=int, default=0,
                        help="also distil on this many WordNet usage examples")
    parser.add_argument("--no-sparse-dropout", action="store_true",
                        help="distil the SparseGPT models with dropout off")
    parser.add_argument("--sparse-cosine", action="store_true",
                        help="cosine learning-rate decay when distilling the SparseGPT models")
    parser.add_argument("--only", help="regular expression: one-shot rows to run (those "
                                       "distilled run whenever --sparse-epochs is not 0)")
    parser.add_argument("--skip-structured", action="store_true",
                        help="no structured rows (and so no latency)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--json", help="also write the report to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report = evaluate_all(args)
    print_report(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
