"""``prunekit compare``: unstructured vs N:M vs structured vs combined, measured side by side,
on an image classifier (``--task image``) or the sentence encoder all-MiniLM-L6-v2
(``--task minilm``)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ..compare import CompareSettings, parse_variants, run_comparison
from ..compare.baseline import save_checkpoint, shipped_stem, train_baseline
from ..compare.datasets import comparison_data, minilm_task
from ..compare.minilm_budget import DISTILL_LR
from ..compare.minilm_model import MODEL_NAME
from ..compare.minilm_runner import run_minilm_comparison
from ..compare.minilm_variants import parse_minilm_variants
from ..compare.requirements import check_requirements
from ..compare.settings import DEFAULT_MODEL, FINETUNE_LR, MINILM_TASK, parse_task
from ..compare.store import RESULTS_FILE, ResultStore
from ..errors import SpecError
from ..report import failed_rows, render_terminal, write_reports
from .errors import CheckFailed, report_failures
from .model_ref import build_model


def _variant_text(variants: str | None, variants_file: Path | None) -> str | None:
    if variants_file is None:
        return variants
    if variants:
        raise SpecError("give --variants or --variants-file, not both")
    try:
        lines = variants_file.read_text().splitlines()
    except OSError as exc:
        raise SpecError(f"cannot read --variants-file {variants_file}: {exc}") from exc
    names = [line.split("#", 1)[0].strip() for line in lines]
    return ",".join(n for n in names if n)


def image_only_options(options: dict[str, bool]) -> None:
    """Refuse options that only the image task reads when ``--task minilm`` is given.

    Args:
        options: option name (``--dataset``) -> whether it was given.

    Raises:
        SpecError: naming every such option that was given.
    """
    given = [name for name, used in options.items() if used]
    if given:
        raise SpecError(
            f"--task minilm does not take {', '.join(given)} (they configure the image task)",
            "drop them: the minilm task always distils the dense sentence embeddings of "
            "all-MiniLM-L6-v2 on its own text; --epochs and --lr set that distillation")


def _train_only(settings: CompareSettings, console: Console) -> None:
    """Train the dense baseline from scratch and write it (the shipped checkpoint by default)."""
    import torch

    data = comparison_data(settings)
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        model = build_model(settings.model_ref)
    model = model.to(memory_format=torch.channels_last)
    torch.set_num_threads(settings.threads)
    card = train_baseline(model, data, progress=settings.progress)
    card["model"] = settings.model_ref
    card["command"] = (f"prunekit compare --train-baseline --model {settings.model_ref} "
                       f"--threads {settings.threads} --seed {settings.seed}")
    default = settings.model_ref == DEFAULT_MODEL and settings.dataset_ref is None
    stem = shipped_stem(DEFAULT_MODEL) if default and not settings.quick \
        else settings.out_dir / "baseline" / "model"
    save_checkpoint(model, card, stem)
    console.print(f"baseline accuracy {card['accuracy']:.4f}; wrote {stem}.safetensors / .json")


def _finish(data: dict[str, Any], settings: CompareSettings, as_json: bool, plots: bool,
            console: Console) -> None:
    """Write the reports, show the table, then exit 1 if anything failed.

    Raises:
        CheckFailed: a variant (or the dense control) failed; names each one.
    """
    paths = write_reports(data, settings.out_dir, plots=plots)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        render_terminal(data, console)
        console.print(f"reports: {', '.join(str(p) for p in paths)}")
    failed = failed_rows(data)
    if failed:
        raise CheckFailed(
            f"{len(failed)} of {len(data.get('requested', [])) + 1} runs failed: "
            + "; ".join(f"{name}: {error}" for name, error in failed.items())
            + f" (the others are reported in {settings.out_dir / 'report.md'})")


@report_failures
def compare_command(
    variants: str | None = typer.Option(
        None, help="comma list like unstructured-90,nm-2:4,structured-50,combined-50+80, "
        "or 'all' (default: one per family)"),
    variants_file: Path | None = typer.Option(None, help="file with one variant name a line"),
    quick: bool = typer.Option(False, help="small subsets and short timings (smoke run)"),
    distill: bool = typer.Option(False, help="distil from the dense model while fine-tuning"),
    epochs: int = typer.Option(1, help="fine-tuning epochs per variant (the same for all)"),
    lr: float | None = typer.Option(
        None, help=f"recovery learning rate (default: {FINETUNE_LR} SGD peak, cosine decay, "
        f"for images; {DISTILL_LR:g} AdamW, constant, for minilm)"),
    fade: bool = typer.Option(
        True, "--fade/--no-fade",
        help="structured variants: fade the removed channels out during fine-tuning, then "
        "cut them (--no-fade: cut before fine-tuning)"),
    gradual: bool = typer.Option(
        False, "--gradual/--no-gradual",
        help="unstructured stages: grow the masks during fine-tuning (cubic schedule) "
        "instead of pruning all at once before it"),
    augment: bool = typer.Option(
        False, "--augment/--no-augment",
        help="random crop + flip while fine-tuning (the baseline is trained with them)"),
    model: str = typer.Option(DEFAULT_MODEL, help="zoo name or package.module:factory"),
    dataset: str | None = typer.Option(
        None, help="package.module:factory returning (train, test) Datasets or DataLoaders"),
    data_dir: Path | None = typer.Option(None, help="folder with the Fashion-MNIST idx .gz files"),
    out: Path = typer.Option(Path("compare-out"), "--out", "-o", help="output folder"),
    seed: int = typer.Option(0, help="seed for data order, augmentation and fine-tuning"),
    threads: int = typer.Option(2, help="CPU threads for training and timing"),
    as_json: bool = typer.Option(False, "--json", help="print results as JSON"),
    train_baseline_flag: bool = typer.Option(
        False, "--train-baseline", help="train the dense baseline from scratch, write it, stop"),
    fresh: bool = typer.Option(
        False, "--fresh",
        help="discard the results and cached baseline already in --out (made with other "
        "settings) instead of refusing to run; what is discarded is logged"),
    plots: bool = typer.Option(
        True, "--plots/--no-plots", help="draw the PNG plots (needs matplotlib)"),
    progress: bool = typer.Option(True, help="progress bars"),
    task: str = typer.Option(
        "image", help="image: a classifier on Fashion-MNIST (or --model/--dataset); minilm: "
        "the pretrained sentence encoder all-MiniLM-L6-v2 on English text"),
) -> None:
    """Prune one dense model several ways, fine-tune each, and measure them side by side.

    Writes report.md, results.json, results.csv and PNG plots to --out. Finished variants
    are kept as they complete; rerunning the same command resumes. Besides the variants, the
    dense baseline is fine-tuned with the same budget (the dense+recovery control row), and
    each variant's accuracy is reported against both. Exit code 1 when a variant failed
    (the others are still reported); a folder holding results made with other settings is
    refused unless --fresh.

    Examples: `prunekit compare` (one variant per family, shipped baseline);
    `prunekit compare --variants all --distill` (the full table);
    `prunekit compare --quick` (subsets, a smoke run);
    `prunekit compare --model mypkg.models:net --dataset mypkg.data:loaders`;
    `prunekit compare --task minilm` (the sentence encoder, distilled recovery).
    """
    console = Console()
    chosen = parse_task(task)
    if epochs < 0 or threads < 1:
        raise SpecError(f"bad --epochs {epochs} / --threads {threads}",
                        "epochs >= 0, threads >= 1")
    if chosen == MINILM_TASK:
        image_only_options({
            "--model": model != DEFAULT_MODEL, "--dataset": dataset is not None,
            "--data-dir": data_dir is not None, "--distill": distill, "--no-fade": not fade,
            "--gradual": gradual, "--augment": augment, "--train-baseline": train_baseline_flag,
        })
        settings = CompareSettings(
            variants=tuple(parse_minilm_variants(_variant_text(variants, variants_file),
                                                 quick=quick)),
            out_dir=out, model_ref=MODEL_NAME, epochs=epochs, distill=True, quick=quick,
            seed=seed, threads=threads, lr=DISTILL_LR if lr is None else lr, fade=False,
            progress=progress, task=MINILM_TASK,
        )
        _run_minilm(settings, fresh, as_json, plots, console)
        return
    settings = CompareSettings(
        variants=tuple(parse_variants(_variant_text(variants, variants_file), quick=quick)),
        out_dir=out, model_ref=model, dataset_ref=dataset, data_dir=data_dir, epochs=epochs,
        distill=distill, quick=quick, seed=seed, threads=threads,
        lr=FINETUNE_LR if lr is None else lr, fade=fade, gradual=gradual, augment=augment,
        progress=progress,
    )
    check_requirements(settings, plots=plots and not train_baseline_flag)
    build_model(settings.model_ref)  # fail early on a broken factory
    if train_baseline_flag:
        _train_only(settings, console)
        return
    ResultStore(settings.out_dir, settings.fingerprint()).check(fresh=fresh)
    data = comparison_data(settings)
    with _reporting_interrupts(settings, plots, console):
        results = run_comparison(settings, lambda: build_model(settings.model_ref), data,
                                 fresh=fresh)
    logging.getLogger(__name__).debug("done: %s", list(results["variants"]))
    _finish(results, settings, as_json, plots, console)


def _run_minilm(settings: CompareSettings, fresh: bool, as_json: bool, plots: bool,
                console: Console) -> None:
    """The sentence-encoder comparison: checks, the real model and text, the run, reports."""
    check_requirements(settings, plots=plots)
    ResultStore(settings.out_dir, settings.fingerprint()).check(fresh=fresh)
    task = minilm_task(settings)
    with _reporting_interrupts(settings, plots, console):
        results = run_minilm_comparison(settings, task, fresh=fresh)
    _finish(results, settings, as_json, plots, console)


@contextlib.contextmanager
def _reporting_interrupts(settings: CompareSettings, plots: bool,
                          console: Console) -> Iterator[None]:
    """On Ctrl-C, write the reports of what finished, say how to resume, re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        path = settings.out_dir / RESULTS_FILE
        if path.is_file():
            write_reports(json.loads(path.read_text()), settings.out_dir, plots=plots)
        console.print(f"[yellow]interrupted[/yellow]: finished variants kept in {path}; "
                      "rerun the same command to resume")
        raise

