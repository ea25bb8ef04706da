"""Tiny checkpoints saved sharded (random weights), calibration batches, and the in-memory
reference the sequential path must reproduce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import prunekit as pk

transformers = pytest.importorskip("transformers")

VOCAB = 101
WORDS = [f"w{i}" for i in range(VOCAB - 1)]


def llama_config(**changes: Any) -> Any:
    """A Llama-style config: hidden 64, 3 blocks, grouped-query attention (4 heads, 2 kv)."""
    settings = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                    max_position_embeddings=64, bos_token_id=0, eos_token_id=0)
    return transformers.LlamaConfig(**{**settings, **changes})


def gpt2_config() -> Any:
    """A GPT-2 config (transposed Conv1D weights with biases, tied head)."""
    return transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4,
                                   n_positions=64, bos_token_id=0, eos_token_id=0)


def save_tokenizer(folder: Path) -> None:
    """A word-level tokenizer over ``w0 .. w99`` (plus ``[UNK]``), saved into ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")
    fast.save_pretrained(str(folder))


def save_checkpoint(config: Any, folder: Path, *, seed: int = 0, shard: str = "60KB",
                    cls: str = "LlamaForCausalLM") -> Path:
    """Build ``cls(config)`` with random weights and save it sharded into ``folder``."""
    torch.manual_seed(seed)
    model = getattr(transformers, cls)(config).eval()
    model.save_pretrained(str(folder), max_shard_size=shard)
    return folder


def batches(n: int = 2, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` batches of token ids; the second row of the last batch padded at the end."""
    generator = torch.Generator().manual_seed(seed)
    found = []
    for _ in range(n):
        ids = torch.randint(1, VOCAB, (2, 12), generator=generator)
        found.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    found[-1]["attention_mask"][1, -3:] = 0
    return found


def in_memory(folder: Path, spec: Any, calib: list[Any], dtype: torch.dtype,
              **options: Any) -> Any:
    """``pk.prune`` on the model ``from_pretrained`` loads from ``folder``."""
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()
    return pk.prune(model, spec, calibration=calib, **options)


def outputs(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's logits in eval mode."""
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits.float()
