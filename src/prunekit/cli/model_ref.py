"""Resolve ``--model`` (zoo name, ``torchvision:NAME``, ``package.module:factory`` or
``hf:DIR``, a Hugging Face checkpoint folder pruned block by block from disk)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .. import zoo
from ..errors import CalibrationError, ExampleInputError, FormatError, SpecError
from ..io.refs import build_from_ref, normalize_ref
from ..specs import Spec, TransformerStructured

if TYPE_CHECKING:
    from ..sequential import SequentialResult

HF_PREFIX = "hf:"


def build_model(ref: str, weights: Path | None = None) -> nn.Module:
    """Build the model ``ref`` names and optionally load safetensors weights strictly.

    The same builders as :func:`prunekit.load` (``zoo``, ``torchvision``, an importable
    factory: naming one on the command line is consent to import it).
    """
    model = build_from_ref({"ref": normalize_ref(ref)}, allow_import=True)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors file into ``model`` strictly (no pickle is ever read)."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise FormatError(f"cannot read weights {path}: {exc}", "pass a .safetensors file") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FormatError(f"weights {path} do not fit the model: {exc}") from exc


def example_inputs_for(ref: str, input_shape: str | None, batch: int = 2) -> torch.Tensor:
    """Example inputs: ``--input-shape`` if given (``1,3,224,224``), else the zoo's."""
    if input_shape:
        try:
            shape = tuple(int(d) for d in input_shape.split(","))
        except ValueError as exc:
            raise ExampleInputError(
                f"bad --input-shape {input_shape!r}", "e.g. --input-shape 1,3,224,224"
            ) from exc
        return torch.randn(shape, generator=torch.Generator().manual_seed(0))
    if ref.startswith("torchvision:") or ":" in ref:
        raise ExampleInputError(
            f"--input-shape is required for {ref!r}", "e.g. --input-shape 1,3,224,224"
        )
    return zoo.example_inputs(ref, batch)


def hf_folder(ref: str) -> Path | None:
    """The checkpoint folder of ``--model hf:DIR``, or None for any other reference."""
    return Path(ref[len(HF_PREFIX):]) if ref.startswith(HF_PREFIX) else None


def prune_hf_folder(
    folder: Path, spec: Spec, *, text: Path | None, samples: int, length: int,
    output: Path | None, overwrite: bool, device: str, ignore: Sequence[str],
) -> SequentialResult:
    """Prune a checkpoint folder block by block, calibrated on a text file.

    Args:
        folder: the Hugging Face folder (config, safetensors weights, tokenizer).
        spec: a calibrated one-shot spec (Wanda, SparseGPT, N:M) or a
            ``TransformerStructured``.
        text: the calibration text file, tokenized by the folder's tokenizer.
        samples: calibration sequences.
        length: tokens per sequence.
        output: the folder to write.
        overwrite: replace an existing ``output``.
        device: where blocks run.
        ignore: layers to leave alone.

    Returns:
        What was written.

    Raises:
        SpecError: no ``--out``. CalibrationError: no ``--calibration-text`` (where the spec
            ranks on data), or no tokenizer.
        FormatError: the folder is not a checkpoint (checked before the text is tokenized).
    """
    from ..hf.prune import needs_data
    from ..sequential import prune_pretrained, text_calibration
    from ..sequential.source import check_folder

    if output is None:
        raise SpecError("--model hf:DIR writes the pruned model to a folder, and none was given",
                        "add --out DIR")
    ranks_on_data = not isinstance(spec, TransformerStructured) or needs_data(spec)
    if text is None and ranks_on_data:
        raise CalibrationError("--model hf:DIR is pruned with calibration data, and none was "
                               "given", "add --calibration-text FILE (plain text)")
    check_folder(folder)
    batches = (text_calibration(folder, text, samples=samples, length=length)
               if text is not None else None)
    return prune_pretrained(folder, spec, calibration=batches, out=output,  # type: ignore[arg-type]
                            device=device, ignore=list(ignore), overwrite=overwrite)
