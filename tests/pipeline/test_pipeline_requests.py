"""What every pipeline refuses or records instead of silently ignoring or switching."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from model_state import assert_same_state, model_state
from torch import nn

import prunekit as pk

transformers = pytest.importorskip("transformers")


def _tiny_bert() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=32,
    )
    return transformers.BertModel(config).eval()


def _tokens() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class TwoBranches(nn.Module):
    """Linear layers without a list of sequential blocks (one-shot calibrates it at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


MLP_X = torch.randn(4, 784)
UNUSED = [
    ("magnitude-calibration", lambda: pk.zoo.build("mlp"),
     dict(spec=pk.Unstructured(sparsity=0.5), calibration=[MLP_X]), "calibration="),
    ("nm-calibration", lambda: pk.zoo.build("mlp"),
     dict(spec=pk.NM(2, 4), calibration=[MLP_X]), "calibration="),
    ("wanda-embeddings", lambda: pk.zoo.build("mlp"),
     dict(spec=pk.Unstructured(sparsity=0.5, importance="wanda"), calibration=[MLP_X],
          include_embeddings=True), "include_embeddings="),
    ("structured-embeddings", lambda: pk.zoo.build("resnet"),
     dict(spec=pk.Structured(sparsity=0.5), example_inputs=pk.zoo.example_inputs("resnet"),
          include_embeddings=True), "include_embeddings="),
    ("structured-l1-calibration", lambda: pk.zoo.build("resnet"),
     dict(spec=pk.Structured(sparsity=0.5), example_inputs=pk.zoo.example_inputs("resnet"),
          calibration=[pk.zoo.example_inputs("resnet")]), "calibration="),
    ("transformer-magnitude-calibration", _tiny_bert,
     dict(spec=pk.TransformerStructured(heads=0.25), calibration=[_tokens()]), "calibration="),
]


@pytest.mark.parametrize(("build", "kwargs", "word"), [c[1:] for c in UNUSED],
                         ids=[c[0] for c in UNUSED])
def test_an_argument_the_method_would_ignore_is_refused(build: Any, kwargs: dict[str, Any],
                                                        word: str) -> None:
    model = build()
    before = model_state(model)
    with pytest.raises(pk.SpecError, match=f"does not use {word}"):
        pk.prune(model, inplace=True, **kwargs)
    assert_same_state(before, model_state(model))


def test_the_same_arguments_are_used_where_the_method_needs_them() -> None:
    x = pk.zoo.example_inputs("resnet")
    result = pk.prune(pk.zoo.build("resnet"), pk.Structured(sparsity=0.5, importance="taylor"),
                      x, calibration=[x, x])
    assert result.summary().params_after < result.summary().params_before


def test_structured_pruning_of_a_masked_model_says_finalize_first() -> None:
    x = pk.zoo.example_inputs("resnet")
    masked = pk.prune(pk.zoo.build("resnet"), pk.Unstructured(sparsity=0.5)).model
    with pytest.raises(pk.UnsupportedModelError, match="finalize") as info:
        pk.prune(masked, pk.Structured(sparsity=0.5), x)
    assert "masks" in str(info.value)
    pruned = pk.prune(pk.finalize(masked), pk.Structured(sparsity=0.5), x)
    assert pruned.model(x).shape == (2, 10)


@pytest.mark.parametrize("spec", [pk.Unstructured(sparsity=0.5), pk.Structured(sparsity=0.5)],
                         ids=["unstructured", "structured"])
def test_a_bare_string_ignores_that_module_in_every_pipeline(spec: Any) -> None:
    x = pk.zoo.example_inputs("resnet")
    model = pk.zoo.build("resnet")
    result = pk.prune(model, spec, x, ignore="fc")
    assert torch.equal(pk.finalize(result.model).fc.weight, model.fc.weight)
    assert "fc" in result.plan.skipped


def test_dense_target_without_sequential_blocks_is_refused_not_switched() -> None:
    model = TwoBranches()
    batches = [torch.randn(8, 16) for _ in range(2)]
    with pytest.raises(pk.SpecError, match="reconstruct='layer'"):
        pk.prune(model, pk.Unstructured(sparsity=0.5, importance="sparsegpt",
                                        reconstruct="dense"), calibration=batches)


def test_whole_model_calibration_is_logged_and_recorded_in_the_plan(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batches = [torch.randn(8, 16) for _ in range(2)]  # the normal path for a CNN: not a warning
    with caplog.at_level(logging.INFO, logger="prunekit"):
        result = pk.prune(TwoBranches(), pk.Unstructured(sparsity=0.5, importance="wanda"),
                          calibration=batches)
    assert [r.levelno for r in caplog.records if "whole model at once" in r.getMessage()] == [
        logging.INFO]
    assert result.plan.calibration.startswith("whole model at once")
    assert pk.Plan.from_json(result.plan.to_json()).calibration == result.plan.calibration


def test_block_by_block_calibration_is_recorded_in_the_plan() -> None:
    model = _tiny_bert()
    result = pk.prune(model, pk.Unstructured(sparsity=0.5, importance="wanda"),
                      calibration=[_tokens()], ignore=["pooler"])
    assert result.plan.calibration.startswith("block by block (2 blocks")


def test_every_entry_point_takes_a_prune_result() -> None:
    result = pk.prune(pk.zoo.build("mlp"), pk.Unstructured(sparsity=0.5))
    again = pk.prune(result, pk.Unstructured(sparsity=0.8))
    assert again.summary().sparsity == pytest.approx(0.8, abs=1e-3)
    masked = pk.apply_plan(result, again.plan)
    assert masked is not result.model
    conversion = pk.to_sparse(again, kernel="dense")
    assert conversion.plan is again.plan


def test_measuring_and_recovery_take_a_prune_result() -> None:
    from prunekit.measure import evaluate_accuracy, peak_inference_memory, time_models
    from prunekit.measure.counting import count_macs, count_nonzero_params, count_params
    from prunekit.recover import RecoveryConfig, distill_outputs, finetune

    dense = pk.zoo.build("mlp")
    result = pk.prune(dense, pk.Unstructured(sparsity=0.5))
    x, y = torch.randn(8, 784), torch.randint(0, 10, (8,))
    assert count_params(result) == count_params(result.model)
    assert count_nonzero_params(result) == count_nonzero_params(result.model)
    assert count_macs(result, x) == count_macs(result.model, x)
    assert 0.0 <= evaluate_accuracy(result, [(x, y)]) <= 1.0
    assert peak_inference_memory(result, x)["weights_bytes"] > 0
    assert set(time_models({"pruned": result}, x, rounds=1, warmup=0)) == {"pruned"}
    finetune(result, [(x, y)], RecoveryConfig(epochs=1), progress=False)
    distill_outputs(result, pk.prune(dense, pk.Unstructured(sparsity=0.1)), [x], epochs=1,
                    lr=1e-4, progress=False)
    assert result.summary().sparsity == pytest.approx(0.5, abs=1e-3)  # masks held


def test_one_shot_nm_reads_the_input_width_of_transposed_conv1d_weights() -> None:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=4,
                                     n_positions=32)
    model = transformers.GPT2LMHeadModel(config).eval()  # Conv1D weights are (in, out)
    with pytest.raises(pk.ShapeError) as info:
        pk.prune(model, pk.NM(32, 64, importance="wanda"), calibration=[_tokens()],
                 ignore=["lm_head"])
    message = str(info.value)
    assert "h.0.mlp.c_fc.weight (input width 32)" in message  # (32, 128): 32 inputs
    assert "h.0.mlp.c_proj" not in message  # (128, 32): 128 inputs, a multiple of 64
