"""How much text, distillation and timing the sentence-encoder comparison spends.

The default budget keeps a full run (dense, the dense control and seven variants) within
about 25 minutes on a 2-core CPU; ``--quick`` keeps a smoke run of three variants within
about 3 minutes. Every variant and the control get the same distillation budget.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

DISTILL_LR = 1e-4  # AdamW, constant: the recipe benchmarks/eval_minilm.py measured


@dataclass(frozen=True)
class TextBudget:
    """Sizes of a sentence-encoder comparison.

    Attributes:
        calibration: calibration sentences (Wanda, SparseGPT, activation ranks).
        train: distillation sentences (one epoch = ``train / batch`` steps).
        batch: sentences per calibration and distillation batch.
        train_length: tokens kept per distillation sentence.
        held_out: held-out sentences for the cosine to the dense embeddings.
        max_length: tokens kept per held-out and calibration sentence.
        document_length: tokens kept per rated Lee document.
        latency_length: tokens per sentence when timing (every sentence padded to it).
        latency_batches: the batch sizes timed.
        latency_rounds: interleaved timing rounds per batch size.
        latency_warmup: untimed calls of each model before its timing.
    """

    calibration: int = 128
    train: int = 512
    batch: int = 32
    train_length: int = 64
    held_out: int = 256
    max_length: int = 128
    document_length: int = 256
    latency_length: int = 64
    latency_batches: tuple[int, ...] = (1, 32)
    latency_rounds: int = 5
    latency_warmup: int = 2

    def to_dict(self) -> dict[str, Any]:
        """The budget as JSON-ready values (part of the resume fingerprint)."""
        data = dataclasses.asdict(self)
        data["latency_batches"] = list(self.latency_batches)
        return data


DEFAULT_BUDGET = TextBudget()
QUICK_BUDGET = TextBudget(calibration=16, train=32, held_out=32, max_length=64,
                          document_length=64, latency_length=32, latency_rounds=2,
                          latency_warmup=1)


def text_budget(quick: bool) -> TextBudget:
    """The quick or the default budget."""
    return QUICK_BUDGET if quick else DEFAULT_BUDGET
