"""Fault injection: a failure at any stage of any pipeline leaves the user's model as it was.

Each pipeline (masked, N:M, one-shot Wanda / SparseGPT / dense target, structured, transformer,
to_sparse, apply_plan) is made to fail while validating, halfway through changing the model,
and while verifying the changed model. With ``inplace=True`` the model must come back
bit-identical (tensors, module tree, attributes, hooks, a Hugging Face config, object
identities); with a copy it must never have been touched. The failure must be reported as
prunekit's own (an InternalError), never as the user's input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from model_state import assert_same_state, model_state
from torch import nn

import prunekit as pk
from prunekit.hf.prune import TransformerPipeline
from prunekit.oneshot import walk
from prunekit.oneshot.prune import OneShotPipeline
from prunekit.sparse.convert import SparsePipeline
from prunekit.structured import StructuredPipeline
from prunekit.unstructured import ApplyPlanPipeline, MaskedPipeline

transformers = pytest.importorskip("transformers")


class Injected(Exception):  # noqa: N818 - names what it is in the messages
    """The failure the tests inject (a plain Exception: a bug can raise anything)."""


def _tiny_llama() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=32,
    )
    return transformers.LlamaForCausalLM(config).eval()


def _tiny_bert() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=32,
    )
    return transformers.BertModel(config).eval()


def _tokens(seed: int = 0) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 64, (2, 10), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _half_masked_mlp() -> nn.Module:
    """An MLP already pruned once, so that a second pruning shrinks existing masks in place."""
    return pk.prune(pk.zoo.build("mlp"), pk.Unstructured(sparsity=0.3)).model


@dataclass
class Case:
    name: str
    build: Callable[[], nn.Module]
    call: Callable[[nn.Module, bool], Any]  # (model, inplace) -> result
    pipeline: type
    validate_step: str  # "module.function" called while validating
    mutate_step: str  # "module.function" called once per layer/block while changing the model
    forward_checked: bool = True  # verify runs the model on example inputs


MLP_X = torch.randn(4, 784)
CALIBRATION = [_tokens(1), _tokens(2)]
CASES = [
    Case("masked", _half_masked_mlp,
         lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.6), MLP_X, inplace=i),
         MaskedPipeline, "prunekit.unstructured.plan_masks", "prunekit.unstructured.apply_mask"),
    Case("nm", lambda: pk.zoo.build("mlp"),
         lambda m, i: pk.prune(m, pk.NM(2, 4), MLP_X, inplace=i),
         MaskedPipeline, "prunekit.unstructured.check_nm_shapes",
         "prunekit.unstructured.apply_mask"),
    Case("wanda", _tiny_llama,
         lambda m, i: pk.prune(m, pk.Unstructured(sparsity=0.5, importance="wanda"), _tokens(),
                               calibration=CALIBRATION, inplace=i),
         OneShotPipeline, "prunekit.oneshot.prune.find_blocks", "prunekit.oneshot.walk.prune_layer"),
    Case("sparsegpt-dense-target", _tiny_llama,
         lambda m, i: pk.prune(m, pk.NM(2, 4, importance="sparsegpt", reconstruct="dense",
                                        bias_correction=True),
                               _tokens(), calibration=CALIBRATION, inplace=i),
         OneShotPipeline, "prunekit.oneshot.prune.check_token_ids",
         "prunekit.oneshot.walk.prune_layer"),
    Case("structured", lambda: pk.zoo.build("resnet"),
         lambda m, i: pk.prune(m, pk.Structured(sparsity=0.5), pk.zoo.example_inputs("resnet"),
                               inplace=i),
         StructuredPipeline, "prunekit.structured.channel_scores",
         "prunekit.apply.surgery.slicing._set_tensor"),
    Case("transformer", _tiny_bert,
         lambda m, i: pk.prune(m, pk.TransformerStructured(heads=0.25, neurons=0.25, layers=[2]),
                               _tokens(), inplace=i),
         TransformerPipeline, "prunekit.hf.prune.decide", "prunekit.hf.prune.prune_block"),
    Case("to_sparse", lambda: pk.prune(pk.zoo.build("mlp"), pk.Unstructured(sparsity=0.95)).model,
         lambda m, i: pk.to_sparse(m, MLP_X, kernel="csr", inplace=i),
         SparsePipeline, "prunekit.sparse.convert._input_shapes",
         "prunekit.sparse.convert.sparse_module"),
    Case("apply_plan", lambda: pk.zoo.build("mlp"),
         lambda m, i: pk.apply_plan(m, pk.prune(pk.zoo.build("mlp"), pk.NM(2, 4)).plan,
                                    inplace=i),
         ApplyPlanPipeline, "prunekit.unstructured._plan_mismatch",
         "prunekit.unstructured.apply_mask", forward_checked=False),
]
IDS = [c.name for c in CASES]


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, target: str, call: int) -> list[int]:
    """Replace ``target`` by a wrapper that fails on its ``call``-th call (1-based)."""
    module_name, _, attr = target.rpartition(".")
    module = __import__(module_name, fromlist=[attr])
    original = getattr(module, attr)
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] >= call:
            raise Injected(f"injected failure in {attr}")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, attr, wrapper)
    return calls


def _expect_internal(case: Case, model: nn.Module, inplace: bool,
                     error: type[BaseException] = pk.InternalError) -> BaseException:
    before = model_state(model)
    with pytest.raises(error) as info:
        case.call(model, inplace)
    assert_same_state(before, model_state(model))
    assert not isinstance(info.value, pk.PrunekitError)  # never blamed on the user's input
    return info.value


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "copy"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_failure_while_validating(case: Case, inplace: bool,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model = case.build()
    _fail_on_call(monkeypatch, case.validate_step, 1)
    error = _expect_internal(case, model, inplace)
    assert "while validating" in str(error) and isinstance(error.__cause__, Injected)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "copy"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_failure_halfway_through_the_change(case: Case, inplace: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    model = case.build()
    # the second layer / block fails: the first has been changed by then
    calls = _fail_on_call(monkeypatch, case.mutate_step, 2)
    error = _expect_internal(case, model, inplace)
    assert calls[0] >= 2, "the injected step was never reached twice"
    assert "changing the model" in str(error) and isinstance(error.__cause__, Injected)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "copy"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_failure_of_the_changed_model(case: Case, inplace: bool,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The changed model fails its check: reported as pruning broke it, and undone."""
    model = case.build()
    original_mutate = case.pipeline.mutate

    def mutate_then_break(self: Any, work: nn.Module) -> None:
        original_mutate(self, work)
        target = getattr(self, "conversion", None)
        broken = target.model if target is not None else work

        def explode(*_: Any) -> None:
            raise Injected("the changed model fails")

        broken.register_forward_pre_hook(explode)
        if not case.forward_checked:  # nothing runs the model: break the check itself
            monkeypatch.setattr(case.pipeline, "verify", lambda *_: explode())

    monkeypatch.setattr(case.pipeline, "mutate", mutate_then_break)
    expected = pk.PruningBrokeModelError if case.forward_checked else pk.InternalError
    error = _expect_internal(case, model, inplace, expected)
    if case.forward_checked:
        assert "broke the model" in str(error)


def test_failed_inplace_one_shot_leaves_no_block_pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calibration failing in the third block used to leave blocks 0-1 masked."""
    model = _tiny_llama()
    before = model_state(model)
    original = walk.prune_layer

    def fail_in_third_block(module: nn.Module, key: str, *args: Any) -> torch.Tensor:
        if ".layers.2." in key:
            raise Injected("calibration failed in block 2")
        return original(module, key, *args)

    monkeypatch.setattr(walk, "prune_layer", fail_in_third_block)
    with pytest.raises(pk.InternalError):
        pk.prune(model, pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
                 calibration=CALIBRATION, inplace=True)
    assert_same_state(before, model_state(model))
    assert not any(name.endswith("_orig") for name, _ in model.named_parameters())


def test_a_user_error_found_late_is_still_the_users_and_is_undone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PrunekitError raised after block 0 was pruned passes through unchanged, undone."""
    model = _tiny_llama()
    before = model_state(model)
    original = walk.check_all_ran
    calls = [0]

    def refuse_second_block(*args: Any) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise pk.CalibrationError("layer never ran on the calibration data")
        original(*args)

    monkeypatch.setattr(walk, "check_all_ran", refuse_second_block)
    with pytest.raises(pk.CalibrationError, match="never ran"):
        pk.prune(model, pk.Unstructured(sparsity=0.5, importance="wanda"),
                 calibration=CALIBRATION, inplace=True)
    assert calls[0] == 2
    assert_same_state(before, model_state(model))
