"""prune() with importance="wanda" / "sparsegpt": masked end state, calibration, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from hf_models import FAMILIES, batch, build, logits
from torch import nn

import prunekit as pk
from prunekit.oneshot.calibration import InputStats
from prunekit.select.nm import is_nm


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


def _calibration(n: int = 3) -> list[torch.Tensor]:
    return [torch.randn(16, 16) for _ in range(n)]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_mlp_masked_end_state_with_exact_sparsity(method: str) -> None:
    model = _mlp()
    x = torch.randn(4, 16)
    result = pk.prune(model, pk.Unstructured(sparsity=0.5, importance=method), x,
                      calibration=_calibration())
    assert result.summary().sparsity == pytest.approx(0.5)
    for key, mask in result.plan.masks.items():
        if method == "wanda":  # compared within each output row
            assert mask.sum(dim=1).tolist() == [mask.shape[1] // 2] * mask.shape[0], key
        else:  # SparseGPT: exact within each column block
            assert int(mask.sum()) == mask.numel() // 2, key
    finalized = pk.finalize(result.model)
    assert sorted(finalized.state_dict()) == sorted(model.state_dict())
    assert model[0].weight.count_nonzero() == model[0].weight.numel()  # original untouched


def test_wanda_on_a_single_layer_matches_the_formula() -> None:
    layer = nn.Linear(8, 4)
    batches = [torch.randn(10, 8), torch.randn(6, 8)]
    norms = torch.cat(batches).pow(2).sum(0).sqrt()
    result = pk.prune(layer, pk.Unstructured(sparsity=0.5, importance="wanda"),
                      calibration=batches)
    scores = layer.weight.detach().abs() * norms
    expected = scores > scores.median(dim=1, keepdim=True).values
    assert torch.equal(result.plan.masks["weight"], expected)


def test_sparsegpt_reconstructs_better_than_magnitude() -> None:
    torch.manual_seed(1)
    model = _mlp()
    mix = torch.randn(16, 16)
    batches = [torch.randn(64, 16) @ mix for _ in range(4)]
    held_out = torch.randn(128, 16) @ mix
    dense = model(held_out).detach()

    def error(spec: pk.Unstructured) -> float:
        data = batches if spec.importance == "sparsegpt" else None  # magnitude refuses data
        pruned = pk.prune(model, spec, calibration=data).model
        return float((pruned(held_out).detach() - dense).pow(2).mean())

    assert error(pk.Unstructured(sparsity=0.5, importance="sparsegpt")) < 0.8 * error(
        pk.Unstructured(sparsity=0.5))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_transformers_nm_masks_and_outputs(family: str, method: str) -> None:
    model = build(family)
    inputs = batch()
    result = pk.prune(model, pk.NM(2, 4, importance=method), inputs,
                      calibration=[batch(seed=s) for s in range(1, 3)])
    assert result.plan.masks
    for key, mask in result.plan.masks.items():
        input_dim = 0 if family == "gpt2" and "lm_head" not in key else 1  # Conv1D is (in, out)
        assert is_nm(mask, 2, 4, input_dim=input_dim), key
    out = logits(result.model, inputs)
    assert torch.isfinite(out).all() and out.shape == logits(model, inputs).shape


def test_gpt2_tied_lm_head_is_left_alone() -> None:
    model = build("gpt2")
    result = pk.prune(model, pk.Unstructured(sparsity=0.5, importance="wanda"),
                      calibration=[batch()])
    assert "lm_head" in result.plan.skipped and "tied" in result.plan.skipped["lm_head"]
    assert result.model.lm_head.weight is result.model.transformer.wte.weight


def test_padding_tokens_do_not_count() -> None:
    # The same real tokens with and without extra padding give the same Wanda masks.
    model = build("bert")
    short = batch(size=1, length=8, padded=False)
    ids = torch.cat([short["input_ids"], torch.zeros(1, 5, dtype=torch.long)], dim=1)
    long = {"input_ids": ids, "attention_mask": torch.cat(
        [short["attention_mask"], torch.zeros(1, 5, dtype=torch.long)], dim=1)}
    spec = pk.Unstructured(sparsity=0.5, importance="wanda")
    a = pk.prune(model, spec, calibration=[short]).plan.masks
    b = pk.prune(model, spec, calibration=[long]).plan.masks
    differ = [k for k in a if not torch.equal(a[k], b[k]) and "pooler" not in k]
    assert not differ


@pytest.mark.parametrize("calibration", [None, []])
def test_missing_calibration_is_a_typed_error(calibration: object) -> None:
    model = _mlp()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(pk.CalibrationError, match="calibration"):
        pk.prune(model, pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
                 calibration=calibration, inplace=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_calibration_that_does_not_run_names_the_batch() -> None:
    with pytest.raises(pk.CalibrationError, match="batch 1"):
        pk.prune(_mlp(), pk.NM(2, 4, importance="wanda"),
                 calibration=[torch.randn(2, 16), torch.randn(2, 5)])


def test_tokenizer_mismatch_is_reported() -> None:
    model = build("bert")
    bad = {"input_ids": torch.tensor([[1, 2, 5000]]), "attention_mask": torch.ones(1, 3)}
    with pytest.raises(pk.CalibrationError, match="tokenizer does not match"):
        pk.prune(model, pk.Unstructured(sparsity=0.5, importance="wanda"), calibration=[bad])


def test_threshold_and_global_scope_are_refused() -> None:
    with pytest.raises(pk.SpecError, match="threshold"):
        pk.prune(_mlp(), pk.Unstructured(threshold=0.1, importance="wanda"),
                 calibration=_calibration())
    with pytest.raises(pk.SpecError, match="scope"):
        pk.prune(_mlp(), pk.Unstructured(sparsity=0.5, scope="global", importance="wanda"),
                 calibration=_calibration())


def test_overrides_set_per_layer_sparsity() -> None:
    result = pk.prune(_mlp(), pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
                      overrides={"2": 0.75}, calibration=_calibration())
    assert float((~result.plan.masks["2.weight"]).float().mean()) == pytest.approx(0.75)
    assert float((~result.plan.masks["0.weight"]).float().mean()) == pytest.approx(0.5)


def test_sparsegpt_result_saves_and_loads_with_prunekit(tmp_path) -> None:
    model = build("bert")
    inputs = batch()
    result = pk.prune(model, pk.Unstructured(sparsity=0.5, importance="sparsegpt"),
                      calibration=[batch(seed=1)])
    pk.save(result, tmp_path / "bert")
    loaded = pk.load(tmp_path / "bert").eval()
    assert torch.equal(logits(loaded, inputs), logits(result.model, inputs))


def _block_sparsity(masks: dict[str, torch.Tensor], block: int) -> float:
    mine = [m for k, m in masks.items() if k.startswith(f"encoder.layer.{block}.")]
    return sum(int((~m).sum()) for m in mine) / sum(m.numel() for m in mine)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_owl_allocation_keeps_more_of_the_outlier_block_and_the_total(method: str) -> None:
    model = build("bert")
    with torch.no_grad():  # give block 1 a few huge weights: many outlier scores
        model.encoder.layer[1].intermediate.dense.weight[:, :4] *= 30.0
    spec = pk.Unstructured(sparsity=0.5, importance=method, allocation="owl")
    result = pk.prune(model, spec, calibration=[batch(seed=1), batch(seed=2)],
                      ignore=["pooler"])
    masks = result.plan.masks
    removed = sum(int((~m).sum()) for m in masks.values())
    assert removed / sum(m.numel() for m in masks.values()) == pytest.approx(0.5, abs=0.01)
    sparsities = [_block_sparsity(masks, b) for b in range(3)]
    assert sparsities[1] == min(sparsities) and sparsities[1] < 0.45
    assert result.plan.spec["allocation"] == "owl"


def test_owl_allocation_needs_a_calibrated_score_and_no_overrides() -> None:
    with pytest.raises(pk.SpecError, match="calibrated"):
        pk.Unstructured(sparsity=0.5, allocation="owl")
    with pytest.raises(pk.SpecError, match="allocation"):
        pk.Unstructured(sparsity=0.5, importance="wanda", allocation="nope")
    with pytest.raises(pk.SpecError, match="overrides"):
        pk.prune(_mlp(), pk.Unstructured(sparsity=0.5, importance="wanda", allocation="owl"),
                 overrides={"2": 0.75}, calibration=_calibration())


def test_statistics_passes_stop_after_the_last_layer_and_change_nothing(monkeypatch) -> None:
    model = build("bert")
    calibration = [batch(seed=1), batch(seed=2), batch(seed=3)]
    spec = pk.Unstructured(sparsity=0.5, importance="sparsegpt")
    calls: list[int] = []
    last = model.encoder.layer[0].output.dense
    handle = last.register_forward_hook(lambda *_: calls.append(1))
    fast = pk.prune(copy.deepcopy(model), spec, calibration=calibration, inplace=True,
                    ignore=["pooler"])
    handle.remove()
    # the block-finding probe, the first statistics pass only (it learns the call order),
    # and 3 replays that feed block 1
    assert len(calls) == 1 + 1 + 3
    monkeypatch.setattr(InputStats, "end_pass", lambda self: None)
    full = pk.prune(model, spec, calibration=calibration, ignore=["pooler"]).plan.masks
    assert all(torch.equal(fast.plan.masks[k], full[k]) for k in full)
