"""PrunekitCallback and DistillationTrainer with a real transformers.Trainer on CPU (a tiny
config-built BERT): target sparsity reached, masks survive checkpoints and
``train(resume_from_checkpoint=...)``, biases, norms and embeddings never pruned, no growth
over repeated ``train()`` calls, the distillation loss, typed errors."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from integration_models import (
    hidden_values_are_zero,
    live_tensors,
    masked_names,
    masks_of,
    prunable_weights,
    removed_fraction,
    rss_after_gc,
)

import prunekit as pk
from prunekit.errors import PlanError, SpecError, TargetError
from prunekit.recover import GradualSchedule, distillation_loss

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")
from prunekit.integrations.hf_trainer import (  # noqa: E402
    DistillationTrainer,
    PrunekitCallback,
)

TOLERANCE = 1e-3  # target sparsity reached within 0.1%


class Sentences(torch.utils.data.Dataset):
    """32 random token sequences with binary labels."""

    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 100, (n, 8), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def bert(seed: int = 0) -> Any:
    """A one-layer BERT classifier: 2336 Linear weights, LayerNorms, embeddings."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=2)
    return transformers.BertForSequenceClassification(config)


def arguments(tmp_path: Path, steps: int, **kwargs: Any) -> Any:
    warnings.filterwarnings("ignore", module="transformers")
    settings = dict(max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-2,
                    weight_decay=0.1, report_to=[], use_cpu=True, logging_steps=1000,
                    disable_tqdm=True, save_strategy="no", seed=0)
    settings.update(kwargs)
    return transformers.TrainingArguments(str(tmp_path), **settings)


def train(tmp_path: Path, model: Any, callback: PrunekitCallback, steps: int,
          **kwargs: Any) -> Any:
    trainer = transformers.Trainer(model, arguments(tmp_path, steps, **kwargs),
                                   train_dataset=Sentences(), callbacks=[callback])
    trainer.train()
    return trainer


def test_one_shot_reaches_sparsity_and_prunes_only_linear_weights(tmp_path: Path) -> None:
    model = bert()
    train(tmp_path, model, PrunekitCallback(pk.Unstructured(sparsity=0.5, scope="global")), 4)
    masks = masks_of(model.state_dict())
    assert abs(removed_fraction(masks) - 0.5) <= TOLERANCE
    assert masked_names(model) == prunable_weights(model)  # no bias, LayerNorm, embedding
    assert hidden_values_are_zero(model)


def test_pruning_leaves_biases_norms_and_kept_weights_as_they_were(tmp_path: Path) -> None:
    model = bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen: dict[str, torch.Tensor] = {}

    class Probe(transformers.TrainerCallback):  # runs after the pruning callback
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                           **kwargs: Any) -> None:
            seen.update({k: v.clone() for k, v in model.state_dict().items()})

    trainer = transformers.Trainer(model, arguments(tmp_path, 1), train_dataset=Sentences(),
                                   callbacks=[PrunekitCallback(pk.Unstructured(sparsity=0.5)),
                                              Probe()])
    trainer.train()
    for key, value in before.items():
        if f"{key}_mask" in seen:  # a pruned weight: kept entries unchanged, the rest zero
            mask = seen[f"{key}_mask"]
            assert torch.equal(seen[f"{key}_orig"][mask], value[mask]), key
            assert abs(float((~mask).float().mean()) - 0.5) <= 1 / mask.numel(), key
        else:  # biases, LayerNorms, embeddings
            assert torch.equal(seen[key], value), key


def test_masks_survive_checkpoint_and_resume(tmp_path: Path) -> None:
    """A gradual run (pruned before steps 2, 4 and 5 of 6, to 0.7) saved every 2 steps;
    resuming a fresh model from the checkpoint at step 4 (mid-ramp) ends where the
    uninterrupted run ended."""
    def callback() -> PrunekitCallback:
        schedule = GradualSchedule(final_sparsity=0.7, end_fraction=0.67, every=2)
        return PrunekitCallback(pk.Unstructured(sparsity=0.7, scope="global"),
                                schedule=schedule)

    whole = bert()
    train(tmp_path, whole, callback(), 6, save_strategy="steps", save_steps=2)
    final = masks_of(whole.state_dict())
    assert abs(removed_fraction(final) - 0.7) <= TOLERANCE
    stored = safetensors_torch.load_file(str(tmp_path / "checkpoint-4" / "model.safetensors"))
    assert 0 < removed_fraction(masks_of(stored)) < 0.7  # mid-ramp, masks in the file

    # a fresh dense model loads exactly what was saved, masks included ...
    fresh = bert(seed=1)
    trainer = transformers.Trainer(fresh, arguments(tmp_path, 4), train_dataset=Sentences(),
                                   callbacks=[callback()])
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))  # nothing left to do
    state = fresh.state_dict()
    assert set(state) == set(stored)
    assert all(torch.equal(state[k], v) for k, v in stored.items())

    # ... and finishes the ramp as the uninterrupted run did
    resumed = bert(seed=1)
    trainer = transformers.Trainer(resumed, arguments(tmp_path, 6), train_dataset=Sentences(),
                                   callbacks=[callback()])
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
    expected, got = whole.state_dict(), resumed.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6, msg=key)


def test_resume_without_the_callback_at_init_is_refused(tmp_path: Path) -> None:
    model = bert()
    train(tmp_path, model, PrunekitCallback(pk.Unstructured(sparsity=0.5)), 2,
          save_strategy="steps", save_steps=2)
    fresh = bert(seed=1)
    trainer = transformers.Trainer(fresh, arguments(tmp_path, 4), train_dataset=Sentences())
    trainer.add_callback(PrunekitCallback(pk.Unstructured(sparsity=0.5)))
    with pytest.raises(PlanError, match="Trainer\\(callbacks="):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


def test_three_trains_do_not_grow_memory(tmp_path: Path) -> None:
    """Measured: the process RSS after a full gc, after the first and the third
    ``trainer.train()`` of one Trainer, and the number of live tensors."""
    model = bert()
    trainer = transformers.Trainer(model, arguments(tmp_path, 2), train_dataset=Sentences(),
                                   callbacks=[PrunekitCallback(pk.Unstructured(sparsity=0.5))])
    trainer.train()
    rss, tensors = rss_after_gc(), live_tensors()
    for _ in range(2):
        trainer.train()
    assert rss_after_gc() <= 1.05 * rss
    assert live_tensors() <= tensors
    assert not model._load_state_dict_pre_hooks  # the loading hook left after training
    assert abs(removed_fraction(masks_of(model.state_dict())) - 0.5) <= TOLERANCE


def test_distillation_loss_mixes_labels_and_teacher(tmp_path: Path) -> None:
    student, teacher = bert(seed=0).eval(), bert(seed=1)  # eval: no dropout to compare
    trainer = DistillationTrainer(student, arguments(tmp_path, 1), train_dataset=Sentences(),
                                  teacher=teacher, alpha=0.3, temperature=2.0)
    batch = {"input_ids": Sentences().ids[:4], "labels": Sentences().labels[:4]}
    logits = student(input_ids=batch["input_ids"]).logits
    with torch.no_grad():
        target = teacher(input_ids=batch["input_ids"]).logits
    label = torch.nn.functional.cross_entropy(logits, batch["labels"])
    expected = 0.7 * label + 0.3 * distillation_loss(logits, target, 2.0)
    torch.testing.assert_close(trainer.compute_loss(student, dict(batch)), expected)
    unlabelled = {"input_ids": batch["input_ids"]}  # no labels: the distillation term only
    torch.testing.assert_close(trainer.compute_loss(student, unlabelled),
                               distillation_loss(logits, target, 2.0))
    trainer.kind = "mse"
    torch.testing.assert_close(trainer.compute_loss(student, unlabelled),
                               (logits - target).pow(2).sum(-1).mean())


def test_distillation_trainer_recovers_with_masks_kept(tmp_path: Path) -> None:
    student, teacher = bert(), bert()
    pk.prune(student, pk.Unstructured(sparsity=0.6, scope="global"), inplace=True)
    before = masks_of(student.state_dict())
    trainer = DistillationTrainer(student, arguments(tmp_path, 3), train_dataset=Sentences(),
                                  teacher=teacher, callbacks=[PrunekitCallback()])
    trainer.train()
    after = masks_of(student.state_dict())
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert hidden_values_are_zero(student)
    assert all(p.grad is None for p in teacher.parameters())  # the teacher never trained


def test_bad_settings_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="structured pruning"):
        PrunekitCallback(pk.Structured(sparsity=0.5))
    with pytest.raises(SpecError, match="epoch=1.5"):
        PrunekitCallback(pk.Unstructured(sparsity=0.5), epoch=1.5)  # type: ignore[arg-type]
    model = bert()
    with pytest.raises(SpecError, match="teacher is the student"):
        DistillationTrainer(model, arguments(tmp_path, 1), teacher=model)
    with pytest.raises(SpecError, match="alpha=2"):
        DistillationTrainer(model, arguments(tmp_path, 1), teacher=bert(), alpha=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TargetError, match="nope"):
        train(tmp_path, model, PrunekitCallback(pk.Unstructured(sparsity=0.5), ignore="nope"), 1)
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_missing_transformers_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from prunekit import MissingDependencyError

    monkeypatch.setitem(sys.modules, "transformers", None)
    for name in ("prunekit.integrations.hf_trainer", "prunekit.integrations.hf_distill"):
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingDependencyError, match="transformers") as info:
        importlib.import_module("prunekit.integrations.hf_trainer")
    assert isinstance(info.value, ImportError)
    assert "prunekit[hf]" in str(info.value)
