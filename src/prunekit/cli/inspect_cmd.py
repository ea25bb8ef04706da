"""``prunekit inspect DIR``: what a saved artefact holds, without loading its weights."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..io import artifact_bytes, read_manifest
from ..io.manifest import Manifest
from .errors import report_failures

ITEMSIZE = {
    "float64": 8,
    "int64": 8,
    "float32": 4,
    "int32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}


def describe(manifest: Manifest, folder: Path) -> dict[str, Any]:
    """The manifest summary as JSON-able data: end state, model, spec, per-tensor storage."""
    tensors: list[dict[str, Any]] = []
    for name, t in manifest.tensors.items():
        dense = math.prod(t.shape) * ITEMSIZE[t.dtype]
        tensors.append(
            {
                "name": name,
                "shape": list(t.shape),
                "dtype": t.dtype,
                "format": t.format,
                "masked": t.masked,
                "stored_bytes": t.stored_bytes,
                "dense_bytes": dense,
            }
        )
    dense_total = sum(t["dense_bytes"] for t in tensors)
    stored_total = sum(t["stored_bytes"] for t in tensors)
    return {
        "path": str(folder),
        "end_state": manifest.end_state,
        "model": manifest.model,
        "spec": manifest.spec,
        "versions": manifest.versions,
        "sparse_modules": manifest.sparse_modules,
        "tensors": tensors,
        "dense_bytes": dense_total,
        "stored_bytes": stored_total,
        "bytes_on_disk": artifact_bytes(folder),
        "removed_modules": (manifest.plan or {}).get("removed_modules", []),
    }


DTYPE_SHORT = {"float64": "f64", "float32": "f32", "float16": "f16", "bfloat16": "bf16",
               "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8"}


def tensor_table(info: dict[str, Any]) -> Table:
    """Per-tensor storage in columns that fit an 80-column terminal (long names fold onto a
    second line; nothing is cut). The dense byte counts are in ``--json``."""
    table = Table(title="tensors", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("tensor", "shape", "dtype", "format", "stored B", "ratio"):
        table.add_column(col, justify="right" if col in ("stored B", "ratio") else "left",
                         overflow="fold", no_wrap=col != "tensor")
    for t in info["tensors"]:
        ratio = t["stored_bytes"] / t["dense_bytes"] if t["dense_bytes"] else 1.0
        table.add_row(
            t["name"],
            "x".join(map(str, t["shape"])),
            DTYPE_SHORT.get(t["dtype"], t["dtype"]),
            t["format"] + (" (mask)" if t["masked"] else ""),
            f"{t['stored_bytes']:,}",
            f"{ratio:.3f}",
        )
    return table


def _render(info: dict[str, Any], console: Console) -> None:
    model = info["model"]
    console.print(f"[bold]{escape(info['path'])}[/bold]: {', '.join(info['end_state'])}")
    console.print(
        f"model: {model.get('ref') or '(no reference: load needs build=)'} ({model.get('class')})",
        highlight=False,
    )
    if info["spec"]:
        console.print(f"spec: {escape(json.dumps(info['spec']))}", highlight=False)
    console.print(tensor_table(info))
    if info["sparse_modules"]:
        kernels = ", ".join(f"{k}={v}" for k, v in info["sparse_modules"].items())
        console.print(f"sparse kernels: {kernels}", highlight=False)
    ratio = info["stored_bytes"] / max(1, info["dense_bytes"])
    console.print(
        f"tensors {info['stored_bytes']:,} bytes stored vs {info['dense_bytes']:,} "
        f"dense ({ratio:.3f}x); {info['bytes_on_disk']:,} bytes on disk",
        highlight=False,
    )
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    console.print(f"written by {versions}", highlight=False)


@report_failures
def inspect_command(
    path: Path = typer.Argument(..., help="an artefact folder written by prunekit save / prune -o"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Show what a saved artefact holds: end state, model, spec, per-tensor storage.

    Example: prunekit inspect out/lenet90 --json
    """
    info = describe(read_manifest(path), path)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        _render(info, Console())
