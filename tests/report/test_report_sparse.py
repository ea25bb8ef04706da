"""The reports say what pk.to_sparse ran sparse in each model timed through it, per batch
size, and why a model was timed dense instead: in report.md, the CSV and the terminal (which
still fits 80 columns)."""

from __future__ import annotations

import csv
import io
from typing import Any

from report_samples import DENSE_BYTES, document, row
from rich.console import Console

from prunekit.report import flat_rows, render_markdown, render_terminal, to_csv
from prunekit.report.mission import mission_table

NUMBA = "numba is not installed, so the sparse kernels are unavailable"


def _layer(name: str, kind: str, kernel: str, reason: str) -> dict[str, Any]:
    return {"name": name, "kind": kind, "shape": [64, 32, 3, 3], "sparsity": 0.9,
            "storage": "csr", "kernel": kernel, "dense_ms": 1.0, "sparse_ms": 0.5,
            "reason": reason}


def _converted(convs: int, total: int) -> dict[str, Any]:
    """A conversion that ran ``convs`` of ``total`` convolutions sparse (and no Linear)."""
    layers = [_layer(f"conv{i}", "Conv2d", "csr", "csr 2.00x dense") for i in range(convs)]
    layers += [_layer(f"conv{i}", "Conv2d", "dense", "csr only 0.80x dense")
               for i in range(convs, total)]
    layers.append(_layer("fc", "Linear", "dense", "sparsity 20% < 50%"))
    return {"converted": True, "timed": "to_sparse" if convs else "deployable",
            "reason": None if convs else "no layer ran faster sparse",
            "convs": {"sparse": convs, "total": total}, "linears": {"sparse": 0, "total": 1},
            "kernels": {"csr": convs} if convs else {}, "max_abs_diff": 1e-6, "layers": layers}


def _unavailable() -> dict[str, Any]:
    return {"converted": False, "timed": "deployable",
            "reason": f"{NUMBA} (pip install 'prunekit[kernels]')"}


def _document() -> dict[str, Any]:
    unstructured = row("unstructured-90", "unstructured", accuracy=0.92, nonzero=71_629,
                       disk=int(0.129 * DENSE_BYTES), b1=1.05, b64=1.6)
    unstructured["sparse"] = {"b1": _converted(0, 9), "b64": _converted(7, 9)}
    structured = row("structured-50", "structured", accuracy=0.921, nonzero=174_970,
                     macs=20_200_000, disk=int(0.261 * DENSE_BYTES), b1=2.2, b64=3.4)
    combined = row("combined-50+80", "combined", accuracy=0.918, nonzero=35_898,
                   macs=20_200_000, disk=196_763, b1=2.3, b64=3.5)
    combined["sparse"] = {"b1": _unavailable(), "b64": _unavailable()}
    return document([unstructured, structured, combined])


def test_report_md_names_the_sparse_layers_per_batch_and_why_others_stayed_dense() -> None:
    report = render_markdown(_document(), plots=False)
    section = report.split("## Sparse kernels (`pk.to_sparse`)")[1]
    assert ("| unstructured-90 | 0/9 convs + 0/1 linears sparse (no layer ran faster sparse), "
            "1.05x | 7/9 convs + 0/1 linears sparse (csr), 1.60x |") in section
    assert f"| combined-50+80 | dense timing: {NUMBA}" in section
    assert "structured-50 |" not in section  # timed as it is: nothing to say
    layers = section.split("### unstructured-90: kernel per layer")[1]
    assert "| conv0 | Conv2d | 64x32x3x3 | 90.0% | dense (csr only 0.80x dense) | " \
           "csr (csr 2.00x dense) |" in layers
    assert "| conv8 | Conv2d | 64x32x3x3 | 90.0% | dense (csr only 0.80x dense) | " \
           "dense (csr only 0.80x dense) |" in layers
    assert "### combined-50+80" not in section  # never converted: no per-layer choices


def test_the_speed_verdict_says_how_each_family_was_timed() -> None:
    data = _document()
    table = mission_table(flat_rows(data), data["variants"])
    speed = next(line for line in table.splitlines() if line.startswith("| CPU speed vs dense"))
    unstructured, structured, combined = speed.strip("| ").split(" | ")[1:]
    assert "after pk.to_sparse: 0/9 convs + 0/1 linears sparse at b1, 7/9 convs + 0/1 " \
           "linears sparse at b64" in unstructured
    assert "to_sparse" not in structured and "dense timing" not in structured
    assert f"dense timing: {NUMBA}" in combined


def test_csv_counts_the_sparse_layers_of_converted_models_only() -> None:
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(to_csv(flat_rows(_document()))))}
    assert (rows["unstructured-90"]["b1_sparse_layers"],
            rows["unstructured-90"]["b64_sparse_layers"]) == ("0", "7")
    for name in ("dense", "dense+recovery", "structured-50", "combined-50+80"):
        assert rows[name]["b64_sparse_layers"] == "", name  # not converted: no figure


def test_the_terminal_fits_80_columns_and_says_which_models_were_timed_dense() -> None:
    console = Console(width=80, record=True, color_system=None)
    render_terminal(_document(), console)
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    flat = " ".join(text.split())
    assert f"timed with dense kernels: combined-50+80: {NUMBA}" in flat
    assert "unstructured-90:" not in flat  # converted: its figures are the sparse model's
    assert "1.60x" in text


def test_without_converted_models_there_is_no_sparse_section() -> None:
    data = document([row("structured-50", "structured", accuracy=0.92, macs=20_200_000)])
    assert "## Sparse kernels" not in render_markdown(data, plots=False)
