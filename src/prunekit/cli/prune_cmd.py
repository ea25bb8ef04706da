"""``prunekit prune``: prune a model and print the per-layer summary."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .. import api
from ..budget import BudgetTarget, Latency, MACs, Params
from ..errors import SpecError
from ..specs import NM, Depth, Spec, Structured, TransformerStructured, Unstructured
from ..summary import ROOT, Summary
from .errors import report_failures
from .model_ref import build_model, example_inputs_for, hf_folder, prune_hf_folder


class Method(str, Enum):
    unstructured = "unstructured"
    nm = "nm"
    structured = "structured"
    depth = "depth"
    wanda = "wanda"
    sparsegpt = "sparsegpt"
    transformer = "transformer"


class Selection(str, Enum):
    greedy = "greedy"
    oneshot = "oneshot"
    last = "last"


def build_target(
    params: float | None, macs: float | None, latency: float | None, *, batch: int,
    device: str, dtype: str, threads: int | None,
) -> BudgetTarget | None:
    """The budget target of ``--target-params / --target-macs / --target-latency`` (at most
    one), or None.

    Raises:
        SpecError: more than one target, or a bad value.
    """
    given = [(flag, value) for flag, value in (("--target-params", params),
                                               ("--target-macs", macs),
                                               ("--target-latency", latency))
             if value is not None]
    if len(given) > 1:
        raise SpecError(f"give one target, got {' and '.join(flag for flag, _ in given)}",
                        "e.g. --target-macs 0.25")
    if params is not None:
        return Params(params)
    if macs is not None:
        return MACs(macs)
    if latency is not None:
        return Latency(latency, batch=batch, device=device, dtype=dtype,  # type: ignore[arg-type]
                       threads=threads)
    return None


def build_spec(
    method: Method,
    sparsity: float | None,
    threshold: float | None,
    scope: str,
    importance: str,
    nm: str,
    round_to: int,
    target: BudgetTarget | None = None,
) -> Spec:
    """Turn command-line options into a validated spec."""
    if target is not None and method not in (Method.structured, Method.depth):
        raise SpecError(f"a --target-* budget needs --method structured, not {method.value}",
                        "add --method structured")
    if method is Method.nm:
        try:
            n_keep, m = (int(v) for v in nm.split(":"))
        except ValueError as exc:
            raise SpecError(f"bad --nm {nm!r}", "write it as N:M, e.g. --nm 2:4") from exc
        return NM(n_keep=n_keep, m=m, importance=importance)
    if method in (Method.wanda, Method.sparsegpt):
        return Unstructured(sparsity=sparsity, importance=method.value)
    if method is Method.structured:
        return Structured(sparsity=sparsity, threshold=threshold, scope=scope,  # type: ignore[arg-type]
                          importance=importance, round_to=round_to, target=target)
    return Unstructured(sparsity=sparsity, threshold=threshold, scope=scope,  # type: ignore[arg-type]
                        importance=importance)


def build_depth_spec(
    blocks: int, names: list[str], selection: Selection, channels: Structured | None
) -> Depth:
    """``--method depth``: ``--blocks N`` (chosen by ``--selection``) or ``--block NAME``
    (repeatable), with channel pruning of what remains when ``channels`` is given.

    Raises:
        SpecError: neither or both of ``--blocks`` / ``--block``, or a bad value.
    """
    if bool(blocks) == bool(names):
        raise SpecError("--method depth needs --blocks N or --block NAME (not both)",
                        "e.g. --method depth --blocks 2")
    return Depth(blocks=blocks, names=tuple(names), selection=selection.value,
                 channels=channels)


def build_transformer_spec(heads: float, neurons: float, layers: int, importance: str,
                           round_to: int) -> TransformerStructured:
    """``--method transformer``: ``--heads`` / ``--neurons`` fractions and ``--layers``
    blocks removed, ranked by ``--importance`` (``l1``, the default, means magnitude).

    Raises:
        SpecError: nothing to remove, or a bad value.
    """
    return TransformerStructured(heads=heads, neurons=neurons, layers=layers,
                                 importance="magnitude" if importance == "l1" else importance,
                                 round_to=round_to)


def _check_transformer_flags(method: Method, heads: float, neurons: float, layers: int,
                             sparsity: float | None, threshold: float | None) -> None:
    if method is not Method.transformer and (heads or neurons or layers):
        raise SpecError("--heads / --neurons / --layers need --method transformer",
                        "add --method transformer")
    if method is Method.transformer and (sparsity is not None or threshold is not None):
        raise SpecError("--sparsity/--threshold do not apply to --method transformer",
                        "use --heads F, --neurons F and/or --layers N")


def _check_depth_flags(method: Method, blocks: int, names: list[str]) -> None:
    if method is not Method.depth and (blocks or names):
        raise SpecError("--blocks / --block need --method depth", "add --method depth")


def render_summary(summary: Summary, console: Console) -> None:
    """Print the per-layer summary as a rich table plus the totals line (the parameter
    counts alone when no layer is listed: depth pruning without channels)."""
    if not summary.rows:
        console.print(f"parameters {summary.params_before:,} -> {summary.params_after:,}")
        return
    table = Table(title="pruning summary")
    for col in ("layer", "type", "shape", "nonzero", "sparsity", "status"):
        table.add_column(col, justify="right" if col in ("nonzero", "sparsity") else "left")
    for r in summary.rows:
        shape = "x".join(map(str, r.shape_after))
        if r.shape_after != r.shape_before:
            shape = "x".join(map(str, r.shape_before)) + " -> " + shape
        table.add_row(r.name or ROOT, r.kind, shape, str(r.nonzero), f"{r.sparsity:.2%}", r.status)
    console.print(table)
    console.print(
        f"parameters {summary.params_before:,} -> {summary.params_after:,}; "
        f"{summary.sparsity:.2%} of targeted weights removed"
    )


def artifact_ref(model: str) -> str:
    """``--model`` as a saved-artefact reference (``zoo:``, ``torchvision:``, ``import:``)."""
    if ":" not in model:
        return f"zoo:{model}"
    return model if model.startswith("torchvision:") else f"import:{model}"


@report_failures
def prune_command(
    model: str = typer.Option(
        "lenet", "--model", "-m",
        help="zoo name, torchvision:NAME, package.module:factory or hf:DIR (a Hugging Face "
             "folder, pruned one block at a time from disk)"
    ),
    method: Method = typer.Option(
        Method.unstructured,
        help="unstructured, nm, structured, depth (residual blocks), wanda, sparsegpt, or "
             "transformer (heads, MLP neurons, blocks of a Hugging Face folder)"),
    sparsity: float | None = typer.Option(
        None, help="fraction removed, in [0, 1) (0.5 if neither this nor --threshold)"
    ),
    threshold: float | None = typer.Option(None, help="remove everything scored below this"),
    scope: str = typer.Option("layer", help="layer or global ranking"),
    importance: str = typer.Option("l1", help="importance score (l1, l2, random, ...)"),
    nm: str = typer.Option("2:4", help="N:M pattern for --method nm"),
    round_to: int = typer.Option(1, help="structured: kept widths multiple of this"),
    ignore: list[str] = typer.Option([], help="module name or regex to leave alone (repeatable)"),
    weights: Path | None = typer.Option(None, help="safetensors weights for the model"),
    input_shape: str | None = typer.Option(None, help="example input shape, e.g. 1,3,224,224"),
    output: Path | None = typer.Option(
        None, "--output", "--out", "-o", help="save the result to this folder"
    ),
    calibration_text: Path | None = typer.Option(
        None, help="hf:DIR: plain text file, tokenized by the folder's tokenizer"),
    calibration_samples: int = typer.Option(16, help="hf:DIR: calibration sequences"),
    calibration_length: int = typer.Option(128, help="hf:DIR: tokens per sequence"),
    target_params: float | None = typer.Option(
        None, help="structured: keep this fraction of the parameters, in (0, 1]"),
    target_macs: float | None = typer.Option(
        None, help="structured: keep this fraction of the MACs, in (0, 1]"),
    target_latency: float | None = typer.Option(
        None, help="structured: keep this fraction of the measured latency, in (0, 1]"),
    batch: int = typer.Option(1, help="--target-latency: batch size timed"),
    device: str = typer.Option(
        "cpu", help="--target-latency: device timed; hf:DIR: device blocks run on (cpu, cuda)"),
    dtype: str = typer.Option("float32", help="--target-latency: float32, float16, bfloat16"),
    threads: int | None = typer.Option(None, help="--target-latency: torch threads timed"),
    blocks: int = typer.Option(
        0, help="depth: remove this many residual blocks (the least influential)"),
    block: list[str] = typer.Option(
        [], help="depth: remove this residual block, by module name (repeatable)"),
    selection: Selection = typer.Option(
        Selection.oneshot,
        help="depth --blocks: oneshot (each block's influence alone), greedy or last"),
    heads: float = typer.Option(
        0.0, help="transformer: fraction of attention heads removed in every block"),
    neurons: float = typer.Option(
        0.0, help="transformer: fraction of MLP neurons removed in every block"),
    layers: int = typer.Option(
        0, help="transformer: blocks removed (the least influential on calibration text)"),
    seed: int = typer.Option(0, help="seed for random importance"),
    overwrite: bool = typer.Option(False, help="replace an existing --output folder"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Prune a model and print the per-layer summary (shape, nonzeros, sparsity, skipped).

    \b
    Examples:
      prunekit prune --model lenet --method unstructured --sparsity 0.9
      prunekit prune --model mlp --sparsity 0.8 --scope global --json
      prunekit prune --model vgg --method nm --nm 2:4 --ignore 0.0
      prunekit prune --model resnet --method structured --target-macs 0.25
      prunekit prune --model resnet --method structured --target-latency 0.5 --batch 64
      prunekit prune --model fmnist_resnet --method depth --blocks 2
      prunekit prune --model fmnist_resnet --method depth --block stages.0.1 --sparsity 0.5
      prunekit prune -m mypkg.models:build --input-shape 1,3,32,32
      prunekit prune --model hf:llama-dir --method sparsegpt --calibration-text c4.txt --out p
      prunekit prune --model hf:llama-dir --method transformer --heads 0.25 --neurons 0.25
        --layers 2 --importance activation --calibration-text c4.txt --out small

    Exit codes: 0 ok, 1 a check failed, 2 bad usage or input, 3 internal error.
    """
    if method is Method.nm and (sparsity is not None or threshold is not None):
        raise SpecError(
            "--sparsity/--threshold do not apply to --method nm", "use --nm N:M, e.g. --nm 2:4"
        )
    _check_depth_flags(method, blocks, block)
    _check_transformer_flags(method, heads, neurons, layers, sparsity, threshold)
    target = build_target(target_params, target_macs, target_latency, batch=batch,
                          device=device, dtype=dtype, threads=threads)
    channels_given = sparsity is not None or threshold is not None or target is not None
    if not channels_given and method not in (Method.nm, Method.depth, Method.transformer):
        sparsity = 0.5
    spec: Spec
    if method is Method.depth:
        channels = build_spec(Method.structured, sparsity, threshold, scope, importance, nm,
                              round_to, target) if channels_given else None
        assert channels is None or isinstance(channels, Structured)
        spec = build_depth_spec(blocks, block, selection, channels)
    elif method is Method.transformer:
        spec = build_transformer_spec(heads, neurons, layers, importance, round_to)
    else:
        spec = build_spec(method, sparsity, threshold, scope, importance, nm, round_to, target)
    folder = hf_folder(model)
    if folder is not None:
        done = prune_hf_folder(folder, spec, text=calibration_text, samples=calibration_samples,
                               length=calibration_length, output=output, overwrite=overwrite,
                               device=device, ignore=ignore)
        typer.echo(json.dumps({"model": model, **done.to_dict()}, indent=2) if as_json
                   else str(done))
        return
    if method in (Method.wanda, Method.sparsegpt, Method.transformer):
        raise SpecError(f"--method {method.value} prunes a Hugging Face folder: --model hf:DIR",
                        "pass --model hf:DIR (and --calibration-text FILE where it ranks on "
                        "data)")
    net = build_model(model, weights)
    x = example_inputs_for(model, input_shape)
    result = api.prune(net, spec, x, ignore=ignore, seed=seed)
    if output is not None:
        from ..io import save

        save(result, output, overwrite=overwrite, model_ref=artifact_ref(model))
    summary = result.summary()
    budget = getattr(result, "budget", None)
    removed = result.plan.removed_modules
    if as_json:
        payload = {"model": model, "spec": spec.to_dict(), **summary.to_dict()}
        if isinstance(spec, Depth):
            payload["removed_blocks"] = list(removed)
        if budget is not None:
            payload["budget"] = budget.to_dict()
        if output is not None:
            payload["output"] = str(output)
        typer.echo(json.dumps(payload, indent=2))
    else:
        console = Console()
        render_summary(summary, console)
        if isinstance(spec, Depth):
            console.print(f"removed blocks: {', '.join(removed)}", markup=False,
                          highlight=False)
        if budget is not None:
            console.print(str(budget), markup=False, highlight=False)
        if output is not None:
            console.print(f"saved to {output}")
