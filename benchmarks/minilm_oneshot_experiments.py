"""Reconstruction experiments for one-shot sparsity on all-MiniLM-L6-v2 (not library code).

Run:  .venv/bin/python benchmarks/minilm_oneshot_experiments.py --audit
      .venv/bin/python benchmarks/minilm_oneshot_experiments.py --method wanda --refit \\
          --bias own
      .venv/bin/python benchmarks/minilm_oneshot_experiments.py --method sparsegpt \\
          --target dense --bias dense --sequential

A self-contained block-by-block walk (same calibration and evaluation text as
eval_minilm.py, 1 thread) that tries what the library does not do, printing the mean cosine
to the dense sentence embeddings on the 512 held-out sentences:

  --bias own     b += (W_dense - W_pruned) @ mean(x_pruned)   (the library's bias_correction)
  --bias dense   b = b_dense + W_dense @ mean(x_dense) - W_pruned @ mean(x_pruned)
  --refit        exact least squares of every row's kept weights on the calibration inputs
  --target dense reconstruct the dense model's layer outputs (inputs from the pruned model)
                 instead of the layer's own unpruned outputs
  --ridge R      with --target dense: regularise the least-squares target towards the dense
                 weight with R * mean(diag(X^T X)), as the library's reconstruct="dense" does
                 (0: towards zero with the dampening, the first version of this experiment)
  --residual     with --target dense and --ridge: the attention-output and MLP-output layers
                 also absorb the drift of the residual stream added to their output
                 (BERT's BertSelfOutput / BertOutput: LayerNorm(dense(x) + input_tensor)), so
                 the sum entering the LayerNorm, not only the layer's output, matches the
                 dense model's
  --calibration N / --calibration-wordnet N   calibration text (default: 128 fortunes)
  --sequential   prune q/k/v, then the attention output, then each MLP layer, each group
                 calibrated after the earlier groups of its block were pruned
--audit prints, for the first block, each layer's relative reconstruction error
||WX - W'X||^2 / ||WX||^2 of magnitude, Wanda and SparseGPT (50% and 2:4), and the error
after an exact least-squares refit with the same mask.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch
from eval_minilm import interleave
from minilm_data import batches, embed, fortunes, lee_sentences, load_minilm, wordnet_examples

from prunekit.oneshot.calibration import BlockInput, _rows, capture_block_inputs, run_block
from prunekit.oneshot.reconstruct import dense_target_weight
from prunekit.oneshot.sparsegpt import inverse_hessian_factor, sparsegpt_prune
from prunekit.oneshot.wanda import wanda_mask

LAYERS = ["attention.self.query", "attention.self.key", "attention.self.value",
          "attention.output.dense", "intermediate.dense", "output.dense"]
GROUPS = [LAYERS[:3], LAYERS[3:4], LAYERS[4:5], LAYERS[5:6]]


def record(block: Any, inputs: list[BlockInput], names: list[str]) -> dict[str, torch.Tensor]:
    """``{layer: (real tokens, in) float64}``: what each named Linear of ``block`` receives."""
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    state: dict[str, Any] = {"mask": None}
    handles = [block.get_submodule(n).register_forward_pre_hook(
        lambda _m, a, n=n: seen[n].append(_rows(a[0].detach(), state["mask"]).double()))
        for n in names]
    for n in names:  # the residual each output layer's parent adds: ("residual:" + name)
        if n.endswith("output.dense"):
            seen["residual:" + n] = []
            handles.append(block.get_submodule(n.rpartition(".")[0]).register_forward_pre_hook(
                lambda _m, a, n=n: seen["residual:" + n].append(
                    _rows(a[1].detach(), state["mask"]).double())))
    try:
        with torch.no_grad():
            for item in inputs:
                state["mask"] = item.token_mask
                block(*item.args, **item.kwargs)
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v) for n, v in seen.items()}


def damped(xtx: torch.Tensor, damp: float) -> torch.Tensor:
    """``X^T X + damp * mean(diag) I`` (dead inputs get a unit diagonal)."""
    h = xtx.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    return h + damp * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)


def masked_lstsq(h: torch.Tensor, g: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Rows ``w_r`` minimising ``w H w^T - 2 w g_r`` with ``w`` zero outside ``keep_r``."""
    rows, n = keep.shape
    counts = keep.sum(1)
    kmax = int(counts.max())
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :kmax]
    valid = torch.arange(kmax).unsqueeze(0) < counts.unsqueeze(1)  # (rows, kmax)
    w = torch.zeros(rows, n, dtype=torch.float64)
    eye = torch.eye(kmax, dtype=torch.float64)
    step = max(1, int(1.5e8 // (kmax * kmax * 8)))  # rows per batched solve (memory)
    for s in range(0, rows, step):
        idx, v = order[s:s + step], valid[s:s + step]
        hs = h[idx.unsqueeze(2), idx.unsqueeze(1)]
        hs = torch.where(v.unsqueeze(2) & v.unsqueeze(1), hs, eye.expand_as(hs))
        gs = torch.gather(g[s:s + step], 1, idx) * v
        w[s:s + step].scatter_(1, idx, torch.linalg.solve(hs, gs.unsqueeze(-1)).squeeze(-1) * v)
    return w


def prune_linear(lin: Any, xp: torch.Tensor, xd: torch.Tensor, args: argparse.Namespace,
                 drift: torch.Tensor | None = None) -> torch.Tensor:
    """Prune one Linear in place from its pruned-model inputs ``xp`` and dense inputs ``xd``
    (``drift``: dense minus pruned residual added to its output, for ``--residual``)."""
    wd, bd = lin.weight.detach().double(), lin.bias.detach().double()
    n = xp.shape[0]
    h = damped(xp.T @ xp, args.damp)
    cross = xp.T @ (xd if args.target == "dense" else xp)
    g = wd @ cross.T  # (out, in): the least-squares right-hand side of the target
    if args.target == "dense" and args.ridge > 0 and drift is not None:
        xtx = xp.T @ xp  # target W xd + drift, ridge towards W (as dense_target_weight)
        lam = args.ridge * torch.diag(xtx).mean()
        rhs = wd @ cross.T + drift.T @ xp + lam * wd
        eye = torch.eye(xtx.shape[0], dtype=xtx.dtype)
        start = torch.linalg.solve(xtx + lam * eye, rhs.T).T
    elif args.target == "dense" and args.ridge > 0:
        start = dense_target_weight(wd, xp.T @ xp, cross, args.ridge)
    elif args.target == "dense":
        start = torch.linalg.solve(h, g.T).T
    else:
        start = wd
    if args.method == "magnitude":
        k = round(start.numel() * 0.5)
        keep = torch.ones_like(start, dtype=torch.bool)
        keep.view(-1)[start.abs().view(-1).argsort()[:k]] = False
        new = start * keep
    elif args.method == "wanda":
        keep = wanda_mask(start.float(), xp.pow(2).sum(0), sparsity=args.sparsity, nm=args.nm)
        new = start * keep
    else:
        hinv = inverse_hessian_factor(xp.T @ xp, n, args.damp)
        new, keep = sparsegpt_prune(start, hinv, sparsity=args.sparsity, nm=args.nm)
    if args.refit:
        new = masked_lstsq(h, g, keep)
    bias = bd
    if args.bias == "own":
        bias = bd + (wd - new) @ xp.mean(0)
    elif args.bias == "dense":
        bias = bd + wd @ xd.mean(0) - new @ xp.mean(0)
        if drift is not None:
            bias = bias + drift.mean(0)
    with torch.no_grad():
        lin.weight.copy_(new.float())
        lin.bias.copy_(bias.float())
    return keep


def prune_model(dense: Any, calibration: list[Any], args: argparse.Namespace) -> Any:
    """A pruned copy of ``dense``, block by block (each block fed the pruned model's outputs)."""
    model = copy.deepcopy(dense)
    pruned_in = capture_block_inputs(model, model.encoder.layer[0], calibration)
    dense_in = pruned_in
    with torch.no_grad():
        for block, dense_block in zip(model.encoder.layer, dense.encoder.layer, strict=True):
            xd = record(dense_block, dense_in, LAYERS)
            for group in GROUPS if args.sequential else [LAYERS]:
                xp = record(block, pruned_in, group)
                for name in group:
                    drift = (xd["residual:" + name] - xp["residual:" + name]
                             if args.residual and "residual:" + name in xp else None)
                    prune_linear(block.get_submodule(name), xp[name], xd[name], args, drift)
            pruned_in, dense_in = run_block(block, pruned_in), run_block(dense_block, dense_in)
    return model


def audit(dense: Any, calibration: list[Any], args: argparse.Namespace) -> None:
    """Relative reconstruction errors of the first block's layers on their own inputs."""
    block = dense.encoder.layer[0]
    inputs = record(block, capture_block_inputs(dense, block, calibration), LAYERS)
    for name in LAYERS:
        x, lin = inputs[name], block.get_submodule(name)
        y = x @ lin.weight.detach().double().T
        cells = []
        for method, nm in (("magnitude", None), ("wanda", None), ("sparsegpt", None),
                           ("wanda", (2, 4)), ("sparsegpt", (2, 4))):
            trial = argparse.Namespace(**{**vars(args), "method": method, "nm": nm,
                                          "sparsity": None if nm else 0.5, "refit": False,
                                          "bias": "none", "target": "own", "damp": 0.01})
            layer = copy.deepcopy(lin)
            keep = prune_linear(layer, x, x, trial)
            err = float((x @ layer.weight.detach().double().T - y).pow(2).sum() / y.pow(2).sum())
            refit = masked_lstsq(damped(x.T @ x, 0.0), lin.weight.detach().double() @ (x.T @ x),
                                 keep)
            err_refit = float((x @ refit.T - y).pow(2).sum() / y.pow(2).sum())
            cells.append(f"{method}{' 2:4' if nm else ' 50%'} {err:.4f} (refit {err_refit:.4f})")
        print(f"{name}: " + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["magnitude", "wanda", "sparsegpt"],
                        default="sparsegpt")
    parser.add_argument("--nm", action="store_true", help="2:4 instead of 50%% unstructured")
    parser.add_argument("--bias", choices=["none", "own", "dense"], default="none")
    parser.add_argument("--refit", action="store_true")
    parser.add_argument("--target", choices=["own", "dense"], default="own")
    parser.add_argument("--sequential", action="store_true")
    parser.add_argument("--damp", type=float, default=0.01)
    parser.add_argument("--ridge", type=float, default=0.0)
    parser.add_argument("--residual", action="store_true")
    parser.add_argument("--calibration", type=int, default=128)
    parser.add_argument("--calibration-wordnet", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--audit", action="store_true")
    args = parser.parse_args()
    args.nm, args.sparsity = ((2, 4), None) if args.nm else (None, 0.5)
    torch.set_num_threads(args.threads)
    tokenizer, dense = load_minilm()
    texts = fortunes()[: args.calibration]
    if args.calibration_wordnet:
        texts = interleave(texts, wordnet_examples()[: args.calibration_wordnet])
    calibration = batches(tokenizer, texts, size=32)
    if args.audit:
        audit(dense, calibration, args)
        return
    held_out = batches(tokenizer, lee_sentences(512), size=64)
    start = time.perf_counter()
    model = prune_model(dense, calibration, args)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        cos = float((embed(model, held_out) * embed(dense, held_out)).sum(-1).mean())
    print(f"{vars(args)}: cos {cos:.4f}, {seconds:.1f} s")


if __name__ == "__main__":
    main()
