"""Head / neuron / block removal on BERT, GPT-2 and Llama-GQA: oracles, generate, round trips."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from hf_models import FAMILIES, batch, build, logits

import prunekit as pk
from prunekit.hf import read_arch
from prunekit.hf.rebuild import original_config_values, rebuild_transformer

HEADS = {"bert": {0: [1], 2: [0, 3]}, "gpt2": {0: [1], 2: [0, 3]}, "llama": {0: [1, 5], 2: [0, 4]}}


def _zero_removed_inputs(model: torch.nn.Module, plan: pk.Plan) -> torch.nn.Module:
    """The dense model with every removed head / neuron silenced at its output projection."""
    oracle = copy.deepcopy(model)
    arch = read_arch(oracle)
    outputs = [(b.attention.output, b.attention.output_transposed) for b in arch.blocks]
    outputs += [(b.mlp.output.module, b.mlp.output.transposed) for b in arch.blocks]
    for name, transposed in outputs:
        weight = oracle.get_submodule(name).weight
        in_dim = 0 if transposed else 1
        kept = plan.kept.get(f"{name}.weight", {}).get(in_dim)
        if kept is None:
            continue
        removed = [i for i in range(weight.shape[in_dim]) if i not in set(kept)]
        with torch.no_grad():
            weight.index_fill_(in_dim, torch.tensor(removed), 0.0)
    return oracle


@pytest.mark.parametrize("family", FAMILIES)
def test_removing_heads_and_neurons_equals_silencing_them(family: str) -> None:
    model = build(family)
    inputs = batch()
    spec = pk.TransformerStructured(heads=HEADS[family], neurons=0.25)
    result = pk.prune(model, spec, inputs)
    oracle = _zero_removed_inputs(model, result.plan)
    assert torch.allclose(logits(result.model, inputs), logits(oracle, inputs), atol=1e-5)
    assert pk.PruneResult is type(result)
    assert result.summary().params_after < result.summary().params_before


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_generate_after_pruning_heads_neurons_and_layers(family: str) -> None:
    model = build(family, layers=4)
    heads = 0.25 if family == "gpt2" else 0.5  # Llama: 8 query heads over 2 groups
    spec = pk.TransformerStructured(heads=heads, neurons=0.5, layers=[1])
    pruned = pk.prune(model, spec).model
    prompt = batch(size=1, padded=False)["input_ids"][:, :5]
    cached = pruned.generate(prompt, max_new_tokens=6, do_sample=False)
    uncached = pruned.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False)
    assert cached.shape == (1, 11) and torch.equal(cached, uncached)


def test_removing_an_identity_block_keeps_the_output() -> None:
    model = build("llama", layers=3)
    block = model.model.layers[1]
    with torch.no_grad():  # pre-norm block with zero output projections adds nothing
        block.self_attn.o_proj.weight.zero_()
        block.mlp.down_proj.weight.zero_()
    inputs = batch()
    result = pk.prune(model, pk.TransformerStructured(layers=1, importance="activation"),
                      calibration=[inputs])
    assert result.plan.removed_modules == ["model.layers.1"]
    assert torch.allclose(logits(result.model, inputs), logits(model, inputs), atol=1e-5)
    assert [layer.self_attn.layer_idx for layer in result.model.model.layers] == [0, 1]
    assert result.model.config.num_hidden_layers == 2


@pytest.mark.parametrize(
    ("family", "spec"),
    [
        ("bert", pk.TransformerStructured(neurons=0.25, layers=[0])),
        ("gpt2", pk.TransformerStructured(neurons=0.25, layers=[2])),
        ("llama", pk.TransformerStructured(heads=0.5, neurons=0.25, layers=[1])),
    ],
)
def test_save_pretrained_round_trip_for_uniform_widths(family: str, spec: object, tmp_path) -> None:
    model = build(family)
    inputs = batch()
    pruned = pk.prune(model, spec).model
    pruned.save_pretrained(tmp_path)
    reloaded = type(pruned).from_pretrained(tmp_path).eval()
    assert torch.allclose(logits(reloaded, inputs), logits(pruned, inputs), atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("config_from", ["original", "pruned"])
def test_plan_rebuilds_the_pruned_model(family: str, config_from: str) -> None:
    # Per-layer head counts (explicit heads): only prunekit's plan can describe this. The
    # model to rebuild may come from the original config or from the pruned model's config.
    model = build(family)
    inputs = batch()
    result = pk.prune(model, pk.TransformerStructured(heads=HEADS[family], neurons=0.25,
                                                      layers=[1]))
    plan = pk.Plan.from_json(result.plan.to_json())
    config = copy.deepcopy(result.model.config)
    if config_from == "original":
        for key, value in original_config_values(plan).items():
            setattr(config, key, value)
    fresh = type(model)(config).eval()
    rebuild_transformer(fresh, plan)
    fresh.load_state_dict(result.model.state_dict(), strict=True)
    assert torch.allclose(logits(fresh, inputs), logits(result.model, inputs), atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_pk_save_then_load_reproduces_a_pruned_transformer(family: str, tmp_path) -> None:
    model = build(family)
    inputs = batch()
    result = pk.prune(model, pk.TransformerStructured(heads=HEADS[family], neurons=0.25,
                                                      layers=[1]))
    pk.save(result, tmp_path / family)
    loaded = pk.load(tmp_path / family).eval()
    assert type(loaded) is type(model)
    assert torch.equal(logits(loaded, inputs), logits(result.model.eval(), inputs))


@pytest.mark.parametrize("family", ["bert", "llama"])  # GPT-2's Conv1D takes no masks
def test_masks_on_a_pruned_transformer_save_and_load_as_one_plan(family: str, tmp_path) -> None:
    inputs = batch()
    small = pk.prune(build(family), pk.TransformerStructured(heads=HEADS[family], neurons=0.25,
                                                             layers=[1]))
    both = pk.prune(small, pk.Unstructured(sparsity=0.5))  # a result: the surgery carries over
    assert both.plan.spec["kind"] == "transformer_structured"
    assert both.plan.spec["then"]["kind"] == "unstructured" and both.plan.masks
    assert both.plan.removed_modules == small.plan.removed_modules
    assert both.summary().params_before == small.summary().params_before
    loaded = pk.load(pk.save(both, tmp_path / family)).eval()
    assert torch.equal(logits(loaded, inputs), logits(both.model.eval(), inputs))


def test_plan_records_blocks_attributes_and_config() -> None:
    result = pk.prune(build("gpt2", layers=3), pk.TransformerStructured(heads=0.25, layers=[0]))
    plan = result.plan
    assert plan.removed_modules == ["transformer.h.0"]
    assert plan.attributes["transformer.h.0.attn"]["num_heads"] == 3
    assert plan.attributes["transformer.h.1.attn"]["layer_idx"] == 1
    assert plan.attributes["config"] == {"num_hidden_layers": 2}
    assert plan.attributes["config_before"] == {"num_hidden_layers": 3}
    assert plan.shapes["transformer.h.0.attn.c_attn.weight"] == [32, 72]
    assert plan.kept["transformer.h.0.attn.c_proj.weight"][0] == plan.kept[
        "transformer.h.0.attn.c_attn.weight"][1][:24]


def test_magnitude_removes_the_silent_head() -> None:
    model = build("bert", layers=1)
    att = model.encoder.layer[0].attention
    with torch.no_grad():
        for layer in (att.self.query, att.self.key, att.self.value):
            layer.weight[16:24] = 0.0  # head 2
        att.output.dense.weight[:, 16:24] = 0.0
    result = pk.prune(model, pk.TransformerStructured(heads=0.25))
    kept = result.plan.kept["encoder.layer.0.attention.self.query.weight"][0]
    assert kept == [*range(16), *range(24, 32)]


def test_activation_removes_the_head_nobody_hears() -> None:
    model = build("llama", layers=1)
    with torch.no_grad():  # query heads 2 and 6 (one per group) write nothing
        model.model.layers[0].self_attn.o_proj.weight[:, 8:12] = 0.0
        model.model.layers[0].self_attn.o_proj.weight[:, 24:28] = 0.0
    result = pk.prune(model, pk.TransformerStructured(heads=0.25, importance="activation"),
                      calibration=[batch()])
    kept = result.plan.kept["model.layers.0.self_attn.o_proj.weight"][1]
    assert not set(kept) & {*range(8, 12), *range(24, 28)} and len(kept) == 24
    assert result.model.model.layers[0].self_attn.num_key_value_groups == 3


def test_taylor_uses_the_loss_of_labelled_batches() -> None:
    model = build("llama")
    labelled = {**batch(), "labels": batch()["input_ids"]}
    result = pk.prune(model, pk.TransformerStructured(neurons=0.5, importance="taylor"),
                      calibration=[labelled])
    assert result.model.config.intermediate_size == 32
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(pk.CalibrationError, match="needs a loss"):
        pk.prune(model, pk.TransformerStructured(neurons=0.5, importance="taylor"),
                 calibration=[batch()])


def test_gqa_whole_group_removal_drops_its_key_value_head() -> None:
    model = build("llama", layers=1)
    inputs = batch()
    result = pk.prune(model, pk.TransformerStructured(heads={0: [4, 5, 6, 7]}), inputs)
    att = result.model.model.layers[0].self_attn
    assert att.k_proj.out_features == 4 and att.q_proj.out_features == 16
    assert att.num_key_value_groups == 4
    oracle = _zero_removed_inputs(model, result.plan)
    assert torch.allclose(logits(result.model, inputs), logits(oracle, inputs), atol=1e-5)


def test_ignored_blocks_keep_their_width() -> None:
    result = pk.prune(build("bert"), pk.TransformerStructured(neurons=0.5),
                      ignore=["encoder.layer.0"])
    layers = result.model.encoder.layer
    assert layers[0].intermediate.dense.out_features == 64
    assert layers[1].intermediate.dense.out_features == 32
    assert "intermediate_size" not in result.plan.attributes.get("config", {})


def _unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return set(after) == set(before) and all(torch.equal(after[k], v) for k, v in before.items())


@pytest.mark.parametrize(
    ("family", "spec", "error", "match"),
    [
        ("llama", pk.TransformerStructured(heads=0.125), pk.ShapeError, "does not divide"),
        ("llama", pk.TransformerStructured(heads={0: [0, 1, 4]}), pk.CouplingError, "unevenly"),
        ("bert", pk.TransformerStructured(heads={1: [0, 1, 2, 3]}), pk.SpecError, "every head"),
        ("bert", pk.TransformerStructured(heads=0.9), pk.ShapeError, "all 4 heads"),
        ("bert", pk.TransformerStructured(layers=[0, 1, 2]), pk.SpecError, "all 3 blocks"),
        ("bert", pk.TransformerStructured(heads={7: [0]}), pk.SpecError, "blocks"),
        ("bert", pk.TransformerStructured(neurons=0.5, importance="activation"),
         pk.CalibrationError, "calibration"),
        ("gpt2", pk.TransformerStructured(layers=1), pk.CalibrationError, "calibration"),
    ],
)
def test_bad_requests_fail_before_mutation(family, spec, error, match) -> None:
    model = build(family)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=match):
        pk.prune(model, spec, inplace=True)
    assert _unchanged(model, before)


def test_unknown_architecture_names_the_module() -> None:
    model = pk.zoo.build("transformer")
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(pk.UnsupportedModelError, match="no transformer blocks prunekit knows"):
        pk.prune(model, pk.TransformerStructured(heads=0.25), inplace=True)
    assert _unchanged(model, before)


def test_tokenizer_mismatch_is_reported() -> None:
    bad = {"input_ids": torch.tensor([[3, 900]]), "attention_mask": torch.ones(1, 2)}
    with pytest.raises(pk.CalibrationError, match="tokenizer does not match"):
        pk.prune(build("bert"), pk.TransformerStructured(heads=0.25, importance="activation"),
                 calibration=[bad])


def test_masked_models_must_be_finalized_first() -> None:
    masked = pk.prune(build("bert"), pk.Unstructured(sparsity=0.5)).model
    with pytest.raises(pk.UnsupportedModelError, match="finalize"):
        pk.prune(masked, pk.TransformerStructured(neurons=0.25))


def test_spec_validation_and_dict_round_trip() -> None:
    spec = pk.TransformerStructured(heads={2: [3, 1]}, neurons=0.25, layers=[5, 4])
    assert spec.to_dict()["heads"] == {"2": [1, 3]} and spec.to_dict()["layers"] == [4, 5]
    assert pk.TransformerStructured.from_dict(spec.to_dict()) == spec
    with pytest.raises(pk.SpecError, match="nothing to remove"):
        pk.TransformerStructured()
    with pytest.raises(pk.SpecError, match="importance"):
        pk.TransformerStructured(heads=0.25, importance="l1")
    with pytest.raises(pk.SpecError, match="neurons"):
        pk.TransformerStructured(neurons=1.0)


def test_bert_head_pruning_warns_and_save_pretrained_refuses_with_the_alternative(
    tmp_path, caplog: pytest.LogCaptureFixture,
) -> None:
    # BERT derives the head size from hidden_size / num_attention_heads, so its config
    # cannot describe fewer heads: save_pretrained would write a config from_pretrained
    # rejects. It refuses and names pk.save, which round-trips.
    model = build("bert")
    with caplog.at_level(logging.WARNING, logger="prunekit"):
        result = pk.prune(model, pk.TransformerStructured(heads=0.25))
    assert any("save_pretrained will refuse" in r.getMessage() for r in caplog.records)
    with pytest.raises(pk.UnsupportedModelError, match="pk.save"):
        result.model.save_pretrained(tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    model.save_pretrained(tmp_path / "dense")  # the original keeps its own method
    loaded = pk.load(pk.save(result, tmp_path / "pk"))
    with pytest.raises(pk.UnsupportedModelError, match="heads"):
        loaded.save_pretrained(tmp_path / "hf2")
    ids = torch.randint(0, 100, (2, 7))
    assert torch.equal(loaded.eval()(ids).last_hidden_state,
                       result.model.eval()(ids).last_hidden_state)


def test_transformer_spec_round_trips_through_spec_from_dict() -> None:
    spec = pk.TransformerStructured(heads={0: [1]}, neurons=0.25, layers=[1])
    assert pk.spec_from_dict(spec.to_dict()) == spec
