"""Calibration batches from a plain text file, tokenized by the checkpoint's own tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CalibrationError


def text_calibration(
    folder: str | Path, text_file: str | Path, *, samples: int = 16, length: int = 128,
) -> list[dict[str, torch.Tensor]]:
    """Cut a text file into ``samples`` sequences of ``length`` tokens (one per batch).

    The text is tokenized whole with the tokenizer saved in ``folder`` and cut into
    consecutive windows; a text shorter than one window gives one shorter sequence.

    Args:
        folder: the checkpoint folder holding the tokenizer files.
        text_file: a UTF-8 text file.
        samples: at most this many sequences.
        length: tokens per sequence.

    Returns:
        ``[{"input_ids": (1, n), "attention_mask": (1, n)}, ...]``.

    Raises:
        CalibrationError: no tokenizer in ``folder``, an unreadable or empty text, or a
            non-positive ``samples`` / ``length``.
    """
    import transformers

    if samples < 1 or length < 1:
        raise CalibrationError(f"samples and length must be positive, got {samples}, {length}",
                               "e.g. --calibration-samples 16 --calibration-length 128")
    try:
        text = Path(text_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"cannot read calibration text {text_file}: {exc}",
                               "pass a UTF-8 text file") from exc
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder),
                                                               local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises many error types here
        raise CalibrationError(
            f"{folder} has no tokenizer to cut the calibration text with: "
            f"{type(exc).__name__}: {exc}",
            "save the model's tokenizer into the folder (tokenizer.save_pretrained(folder))",
        ) from exc
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    if not ids.numel():
        raise CalibrationError(f"calibration text {text_file} holds no tokens",
                               "pass a file with some text in it")
    windows = [ids[i:i + length] for i in range(0, ids.numel(), length)][:samples]
    if len(windows) > 1 and windows[-1].numel() < length:
        windows = windows[:-1]
    return [{"input_ids": w.unsqueeze(0), "attention_mask": torch.ones(1, w.numel(),
                                                                       dtype=torch.long)}
            for w in windows]
