"""PrunekitPruning with a real Lightning Trainer on CPU: target sparsity reached, masks
survive checkpoint save and ``fit(ckpt_path=...)``, biases and norms never pruned, no
growth over repeated fits, typed errors for bad settings."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from integration_models import (
    bias_and_norm_tensors,
    hidden_values_are_zero,
    live_tensors,
    masked_names,
    masks_of,
    prunable_weights,
    removed_fraction,
    rss_after_gc,
    tiny_data,
    tiny_net,
)
from torch import nn

import prunekit as pk
from prunekit.errors import SpecError, TargetError
from prunekit.recover import GradualSchedule

L = pytest.importorskip("lightning.pytorch")
from prunekit.integrations.lightning import PrunekitPruning  # noqa: E402

TOLERANCE = 1e-3  # target sparsity reached within 0.1%


class TinyModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # momentum and weight decay move stored values behind masks unless they are zeroed
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)


def loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(tiny_data(32), batch_size=8)  # 4 steps an epoch


def trainer(tmp_path: Path, epochs: int, callbacks: list[Any], **kwargs: Any) -> Any:
    warnings.filterwarnings("ignore", module="lightning")
    settings = dict(max_epochs=epochs, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False,
                    default_root_dir=tmp_path, accelerator="cpu", deterministic=True)
    settings.update(kwargs)
    return L.Trainer(callbacks=callbacks, **settings)


def fit(tmp_path: Path, module: TinyModule, callback: PrunekitPruning, epochs: int,
        **kwargs: Any) -> Any:
    run = trainer(tmp_path, epochs, [callback], **kwargs)
    run.fit(module, loader())
    return run


def test_one_shot_reaches_sparsity_and_prunes_only_layer_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TinyModule()
    fit(tmp_path, module, PrunekitPruning(pk.Unstructured(sparsity=0.75, scope="global")), 2)
    masks = masks_of(module.state_dict())
    assert abs(removed_fraction(masks) - 0.75) <= TOLERANCE
    # only Linear / conv weights carry masks: no bias, no BatchNorm / LayerNorm parameter
    assert masked_names(module) == prunable_weights(module)
    assert not any("bias" in k or k.startswith(("net.1.", "net.5.")) for k in masks)
    assert hidden_values_are_zero(module)  # momentum / weight decay left nothing behind


class WithTeacher(TinyModule):
    def __init__(self) -> None:
        super().__init__()
        self.teacher = tiny_net()


@pytest.mark.parametrize("where", [{"module": "net"}, {"ignore": "teacher"}])
def test_module_or_ignore_leave_a_held_teacher_dense(tmp_path: Path,
                                                      where: dict[str, str]) -> None:
    torch.manual_seed(0)
    module = WithTeacher()
    fit(tmp_path, module, PrunekitPruning(pk.Unstructured(sparsity=0.5), **where), 1)
    assert masked_names(module) == {f"net.{name}" for name in prunable_weights(module.net)}


def test_pruning_leaves_biases_norms_and_kept_weights_as_they_were(tmp_path: Path) -> None:
    """Pruned at the start of epoch 1: the prune itself changes nothing but the pruned
    weights (no bias, norm or kept weight is reset or touched)."""
    torch.manual_seed(0)
    module = TinyModule()
    seen: dict[str, dict[str, torch.Tensor]] = {}

    class Probe(L.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch == 0:
                seen["before"] = bias_and_norm_tensors(pl_module)
                seen["weights"] = {n: p.detach().clone() for n, p in pl_module.named_parameters()
                                   if n in prunable_weights(pl_module)}

        def on_train_batch_start(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            if trainer.current_epoch == 1 and "after" not in seen:
                seen["after"] = bias_and_norm_tensors(pl_module)
                seen["effective"] = {n: pl_module.get_submodule(n[:-7]).weight.detach().clone()
                                     for n in prunable_weights(pl_module)}

    callback = PrunekitPruning(pk.Unstructured(sparsity=0.5), epoch=1)
    trainer(tmp_path, 2, [callback, Probe()]).fit(module, loader())
    for name, value in seen["before"].items():
        assert torch.equal(seen["after"][name], value), name
    for name, weight in seen["weights"].items():
        effective = seen["effective"][name]
        kept = effective != 0
        assert torch.equal(effective[kept], weight[kept]), name  # kept weights not reset
        assert abs(float((~kept).float().mean()) - 0.5) <= 0.02, name  # per layer, rounding


def test_masks_survive_checkpoint_and_resume(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = TinyModule()
    run = fit(tmp_path, first, PrunekitPruning(pk.Unstructured(sparsity=0.8, scope="global")), 2)
    path = tmp_path / "two.ckpt"
    run.save_checkpoint(path)
    saved = torch.load(path, weights_only=False)
    saved_masks = masks_of(saved["state_dict"])
    assert saved_masks and abs(removed_fraction(saved_masks) - 0.8) <= TOLERANCE

    # a freshly built (dense) module loads exactly what was saved, masks included ...
    fresh = TinyModule()
    callback = PrunekitPruning(pk.Unstructured(sparsity=0.8, scope="global"))
    trainer(tmp_path, 2, [callback]).fit(fresh, loader(), ckpt_path=path)
    restored = fresh.state_dict()
    assert set(restored) == set(saved["state_dict"])
    for key, value in saved["state_dict"].items():
        assert torch.equal(restored[key], value), key

    # ... and trains on with the same masks, the pruned weights still zero
    resumed = TinyModule()
    callback = PrunekitPruning(pk.Unstructured(sparsity=0.8, scope="global"))
    trainer(tmp_path, 4, [callback]).fit(resumed, loader(), ckpt_path=path)
    after = masks_of(resumed.state_dict())
    assert set(after) == set(saved_masks)
    for key, mask in saved_masks.items():
        assert torch.equal(after[key], mask), key
        weight = resumed.get_submodule(key.removesuffix(".weight_mask")).weight
        assert not bool(weight.detach()[~mask].any()), key
    assert hidden_values_are_zero(resumed)
    assert callback.state_dict()["pruned"]
    assert not torch.equal(resumed.net[4].weight_orig, fresh.net[4].weight_orig)  # it trained


def test_gradual_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    """A step schedule ramping to 0.9 over 12 of 16 steps: resuming from the checkpoint the
    run wrote after 8 steps (mid-ramp) ends with the same masks and weights as the run
    itself."""
    def callback() -> PrunekitPruning:
        schedule = GradualSchedule(final_sparsity=0.9, end_fraction=0.75, every=2)
        return PrunekitPruning(pk.Unstructured(sparsity=0.9, scope="global"),
                               schedule=schedule)

    ramp: list[float] = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            ramp.append(removed_fraction(masks_of(pl_module.state_dict())))

    torch.manual_seed(0)
    whole = TinyModule()
    every_epoch = L.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="{epoch}",
                                              save_top_k=-1)
    trainer(tmp_path, 4, [callback(), Probe(), every_epoch],
            enable_checkpointing=True).fit(whole, loader())
    assert abs(ramp[-1] - 0.9) <= TOLERANCE
    assert ramp == sorted(ramp) and ramp[0] < 0.5  # ramped up, never down
    assert 0 < ramp[7] < 0.9  # the checkpoint after epoch 1 (8 steps) is mid-ramp

    resumed = TinyModule()
    trainer(tmp_path, 4, [callback()]).fit(resumed, loader(),
                                           ckpt_path=tmp_path / "epoch=1.ckpt")
    expected, got = whole.state_dict(), resumed.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6, msg=key)


def test_gradual_per_epoch_reaches_sparsity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TinyModule()
    schedule = GradualSchedule(final_sparsity=0.6, end_fraction=0.5, every=1)
    callback = PrunekitPruning(lambda s: pk.Unstructured(sparsity=s), schedule=schedule,
                               unit="epoch")
    fit(tmp_path, module, callback, 4)
    masks = masks_of(module.state_dict())
    for key, mask in masks.items():  # per layer (scope="layer"), up to one weight of rounding
        assert abs(removed_fraction({key: mask}) - 0.6) <= 1 / mask.numel(), key
    assert callback.state_dict()["sparsity"] == pytest.approx(0.6)


def test_keeps_masks_of_a_model_pruned_before_fit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TinyModule()
    pk.prune(module.net, pk.NM(n_keep=2, m=4), ignore=nn.Conv2d, inplace=True)  # 9 inputs: no 4s
    before = masks_of(module.state_dict())
    fit(tmp_path, module, PrunekitPruning(), 2)
    after = masks_of(module.state_dict())
    assert set(after) == set(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert hidden_values_are_zero(module)


def test_three_fits_do_not_grow_memory(tmp_path: Path) -> None:
    """Measured: the process RSS after a full gc, after the first and the third fit (the
    same module and callback, a new Trainer each time), and the number of live tensors."""
    torch.manual_seed(0)
    module = TinyModule()
    callback = PrunekitPruning(pk.Unstructured(sparsity=0.5))
    fit(tmp_path, module, callback, 1)
    rss, tensors = rss_after_gc(), live_tensors()
    for _ in range(2):
        fit(tmp_path, module, callback, 1)
    assert rss_after_gc() <= 1.05 * rss
    assert live_tensors() <= tensors
    assert not module._load_state_dict_pre_hooks  # the loading hook left with each fit
    assert abs(removed_fraction(masks_of(module.state_dict())) - 0.5) <= TOLERANCE


def test_lightning_model_pruning_prunes_biases_and_loses_masks_on_resume(
        tmp_path: Path) -> None:
    """The two behaviours of Lightning's own ModelPruning that docs/integrations.md cites
    (and that the tests above show PrunekitPruning avoids); if Lightning changes them, this
    fails and the page needs updating."""
    from lightning.pytorch.callbacks import ModelPruning

    torch.manual_seed(0)
    module = TinyModule()
    run = fit(tmp_path, module, ModelPruning("l1_unstructured", amount=0.5), 1)
    run.save_checkpoint(tmp_path / "mp.ckpt")
    saved = torch.load(tmp_path / "mp.ckpt", weights_only=False)["state_dict"]
    assert int((saved["net.4.bias"] == 0).sum()) > 0  # biases pruned by default
    assert not masks_of(saved)  # plain zeros, no masks
    zeros = saved["net.4.weight"] == 0
    assert int(zeros.sum()) > 0.3 * zeros.numel()
    resumed = TinyModule()
    trainer(tmp_path, 2, [ModelPruning("l1_unstructured", amount=0.5, apply_pruning=False)]
            ).fit(resumed, loader(), ckpt_path=tmp_path / "mp.ckpt")
    assert not bool((resumed.net[4].weight.detach()[zeros] == 0).any())  # all trained back


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: PrunekitPruning(pk.Structured(sparsity=0.5)), "structured pruning"),
        (lambda: PrunekitPruning(pk.Unstructured(sparsity=0.5, importance="wanda")),
         "calibration"),
        (lambda: PrunekitPruning(pk.NM(2, 4), schedule=GradualSchedule(final_sparsity=0.5)),
         "cannot ramp"),
        (lambda: PrunekitPruning(pk.Unstructured(sparsity=0.5),
                                 schedule=GradualSchedule(final_sparsity=0.9)), "disagree"),
        (lambda: PrunekitPruning(pk.Unstructured(sparsity=0.5), epoch=-1), "epoch=-1"),
        (lambda: PrunekitPruning(pk.Unstructured(sparsity=0.5), unit="batch"), "unit='batch'"),
        (lambda: PrunekitPruning(schedule=GradualSchedule(final_sparsity=0.5)), "needs a spec"),
    ],
)
def test_bad_settings_are_typed_errors(make: Any, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        make()


def test_bad_names_fail_at_fit_before_any_change(tmp_path: Path) -> None:
    module = TinyModule()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(TargetError, match="nope"):
        fit(tmp_path, module, PrunekitPruning(pk.Unstructured(sparsity=0.5), ignore="nope"), 1)
    with pytest.raises(SpecError, match="module='head'"):
        fit(tmp_path, module, PrunekitPruning(pk.Unstructured(sparsity=0.5), module="head"), 1)
    after = module.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert not module._load_state_dict_pre_hooks  # the failed fits left no hook behind


def test_missing_lightning_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from prunekit import MissingDependencyError

    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "prunekit.integrations.lightning")
    with pytest.raises(MissingDependencyError, match="lightning") as info:
        importlib.import_module("prunekit.integrations.lightning")
    assert isinstance(info.value, ImportError)
    assert "prunekit[distributed]" in str(info.value)
