"""Tiny Hugging Face models (random weights) shared by the hf tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")

VOCAB = 101


def build(family: str, *, seed: int = 0, layers: int = 3) -> Any:
    """A small BERT / GPT-2 LM / Llama LM (grouped-query: 8 heads, 2 key/value heads)."""
    torch.manual_seed(seed)
    if family == "bert":
        config = transformers.BertConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64,
        )
        model = transformers.BertModel(config)
    elif family == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=layers, n_head=4, n_positions=64,
            bos_token_id=0, eos_token_id=0,
        )
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers, num_attention_heads=8,
            num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
            bos_token_id=0, eos_token_id=0,
        )
        model = transformers.LlamaForCausalLM(config)
    return model.eval()


def batch(seed: int = 0, size: int = 2, length: int = 12, padded: bool = True) -> dict[str, Any]:
    """Token ids with an attention mask (the second row padded at the end)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (size, length), generator=generator)
    mask = torch.ones_like(ids)
    if padded and size > 1:
        mask[1, length - 3 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


def logits(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """The model's main output (logits for LMs, last hidden state for encoders)."""
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


FAMILIES = ("bert", "gpt2", "llama")
