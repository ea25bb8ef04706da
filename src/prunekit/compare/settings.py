"""Everything a comparison run depends on, in one frozen record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..recover import RecoveryConfig
from .variants import Variant

DEFAULT_MODEL = "fmnist_resnet"
IMAGE_TASK, MINILM_TASK = "image", "minilm"
TASKS = {
    IMAGE_TASK: "an image classifier (--model, default fmnist_resnet) on Fashion-MNIST "
                "(or --dataset)",
    MINILM_TASK: "the pretrained sentence encoder all-MiniLM-L6-v2 on English text",
}
QUICK_TRAIN_SAMPLES = 1024
QUICK_TEST_SAMPLES = 1000
QUICK_MAX_STEPS = 8
FINETUNE_LR = 0.02  # measured best of 0.01 / 0.02 for a 1-epoch recovery (README)


def parse_task(name: str) -> str:
    """The task named ``name`` (case and surrounding spaces ignored).

    Raises:
        SpecError: no such task; names the choices.
    """
    task = name.strip().lower()
    if task not in TASKS:
        raise SpecError(f"unknown --task {name!r}",
                        "choose one of: " + "; ".join(f"{k} ({v})" for k, v in TASKS.items()))
    return task


def recipe_constants() -> dict[str, float]:
    """The gradual-pruning schedule constants (part of the resume fingerprint)."""
    from .gradual import FADE_END, GRADUAL_END, GRADUAL_EVERY

    return {"gradual_end": GRADUAL_END, "gradual_every": GRADUAL_EVERY, "fade_end": FADE_END}


@dataclass(frozen=True)
class CompareSettings:
    """Settings of one ``prunekit compare`` run.

    Attributes:
        variants: the variants to run, in order.
        out_dir: where results, reports and saved models go.
        model_ref: zoo name or ``package.module:factory``.
        dataset_ref: ``package.module:factory`` or None for Fashion-MNIST.
        data_dir: Fashion-MNIST idx directory (None: the Debian package's).
        epochs: fine-tuning epochs per variant (the same for all).
        distill: distil from the dense model while fine-tuning.
        quick: subsets and short timings (a smoke run, minutes).
        seed: seeds data order, augmentation and fine-tuning.
        threads: torch threads for training and timing.
        lr: fine-tuning peak learning rate (cosine decay).
        fade: structured variants: fade the removed channels out during the fine-tuning
            epoch, then cut them (:mod:`prunekit.compare.gradual`); the budget is the same.
        gradual: unstructured stages: grow the masks to the target during the epoch
            (cubic schedule) instead of pruning one-shot before it.
        augment: random crop + flip on the fine-tuning batches of the built-in data.
        progress: show progress bars.
        task: ``"image"`` (a classifier fine-tuned on labels) or ``"minilm"`` (the
            sentence encoder, recovered by distilling the dense embeddings; ``epochs`` and
            ``lr`` are then the distillation's).
    """

    variants: tuple[Variant, ...]
    out_dir: Path
    model_ref: str = DEFAULT_MODEL
    dataset_ref: str | None = None
    data_dir: Path | None = None
    epochs: int = 1
    distill: bool = False
    quick: bool = False
    seed: int = 0
    threads: int = 1
    lr: float = FINETUNE_LR
    fade: bool = True
    gradual: bool = False
    augment: bool = False
    progress: bool = True
    task: str = IMAGE_TASK

    @property
    def train_limit(self) -> int | None:
        return QUICK_TRAIN_SAMPLES if self.quick else None

    @property
    def test_limit(self) -> int | None:
        return QUICK_TEST_SAMPLES if self.quick else None

    @property
    def latency_rounds(self) -> int:
        return 3 if self.quick else 15

    def recovery(self) -> RecoveryConfig:
        """The fine-tuning recipe every variant gets."""
        return RecoveryConfig(epochs=self.epochs, lr=self.lr, weight_decay=5e-4,
                              distill=self.distill, seed=self.seed,
                              max_steps=QUICK_MAX_STEPS if self.quick else None,
                              bn_recalibration_batches=QUICK_MAX_STEPS if self.quick else 0)

    def fingerprint(self) -> dict[str, Any]:
        """What must match for cached variant results to be reused on resume."""
        if self.task == MINILM_TASK:
            from .minilm_budget import text_budget

            return {"task": self.task, "model": self.model_ref, "epochs": self.epochs,
                    "quick": self.quick, "seed": self.seed, "threads": self.threads,
                    "lr": self.lr, "budget": text_budget(self.quick).to_dict()}
        return {
            "model": self.model_ref, "dataset": self.dataset_ref or "fashion-mnist",
            "epochs": self.epochs, "distill": self.distill, "quick": self.quick,
            "seed": self.seed, "threads": self.threads, "lr": self.lr,
            "fade": self.fade, "gradual": self.gradual, "augment": self.augment,
            "schedules": recipe_constants(),
        }
