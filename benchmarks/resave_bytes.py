"""Re-save prunekit artefacts with the current storage format and print their bytes on disk.

Use it to compare artefacts written by an older prunekit (or by a long run) with what this
version writes for the very same weights, without retraining:

    .venv/bin/python benchmarks/resave_bytes.py DIR [DIR ...] [--dense DIR]

Each artefact is loaded (``pk.load``), its plan rebuilt from the manifest, saved again into a
temporary folder, and both sizes are printed (ratio to ``--dense``'s bytes when given).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import prunekit as pk
from prunekit.io import read_manifest
from prunekit.plan import Plan
from prunekit.result import PruneResult
from prunekit.specs import spec_from_dict


def resaved_bytes(folder: Path, scratch: Path) -> int:
    """Bytes of ``folder``'s model and plan saved again with the current format."""
    manifest = read_manifest(folder)
    model = pk.load(folder, allow_import=False)
    if manifest.plan is None:
        target = pk.save(model, scratch / folder.name, model_ref=manifest.model.get("ref"))
    else:
        plan = Plan.from_dict(manifest.plan)
        result = PruneResult(model, plan, spec_from_dict(plan.spec), {}, 0)
        target = pk.save(result, scratch / folder.name, model_ref=manifest.model.get("ref"))
    return pk.artifact_bytes(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--dense", type=Path, default=None, help="artefact to divide by")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        dense = resaved_bytes(args.dense, scratch / "dense") if args.dense else None
        print(f"{'artefact':<40} {'bytes as saved':>15} {'bytes now':>12} {'ratio now':>10}")
        for folder in args.folders:
            now = resaved_bytes(folder, scratch)
            ratio = f"{now / dense:.4f}x" if dense else "-"
            print(f"{str(folder):<40} {pk.artifact_bytes(folder):>15,} {now:>12,} {ratio:>10}")


if __name__ == "__main__":
    main()
