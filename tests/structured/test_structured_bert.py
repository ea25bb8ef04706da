"""Head pruning of a Hugging Face BERT (random weights, small config)."""

from __future__ import annotations

import pytest
import torch

import prunekit as pk
from prunekit.measure.counting import count_params

transformers = pytest.importorskip("transformers")


def test_bert_heads_and_ffn_are_pruned_with_attributes_updated() -> None:
    config = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=128)
    model = transformers.BertModel(config).eval()
    inputs = {"input_ids": torch.randint(0, 100, (2, 12))}
    with torch.no_grad():
        before = model(**inputs).last_hidden_state
    result = pk.prune(model, pk.Structured(sparsity=0.5), inputs)
    attn = result.model.encoder.layer[0].attention.self
    assert attn.num_attention_heads == 2 and attn.all_head_size == 32
    assert attn.query.out_features == 32
    assert result.model.encoder.layer[0].intermediate.dense.out_features == 64
    with torch.no_grad():
        after = result.model(**inputs).last_hidden_state
    assert after.shape == before.shape
    assert count_params(result.model) < count_params(model)
