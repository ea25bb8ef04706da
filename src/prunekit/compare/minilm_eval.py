"""Quality of a sentence encoder: fidelity to the dense embeddings, agreement with people.

- ``cosine``: mean cosine between the model's and the dense model's sentence embeddings of
  held-out sentences (1.0: the same embeddings);
- ``lee50``, ``ws353``, ``simlex``: Spearman rank correlation between the cosine similarity
  of embeddings and human similarity ratings (Lee 50 documents, WordSim-353, SimLex-999).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .minilm_data import TextData
from .minilm_model import TokenBatch, embed, token_batches

METRICS = {
    "cosine": "cos vs dense",
    "lee50": "Lee-50 ρ",
    "ws353": "WS-353 ρ",
    "simlex": "SimLex ρ",
}
HUMAN = ("lee50", "ws353", "simlex")


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks from 1, ties given their average rank."""
    order = torch.argsort(values, stable=True)
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = torch.arange(1, len(values) + 1, dtype=torch.float64)
    unique, inverse = torch.unique(values, return_inverse=True)
    sums = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(unique), dtype=torch.float64).index_add_(
        0, inverse, torch.ones_like(ranks))
    return (sums / counts)[inverse]


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation of two equally long sequences (ties: average ranks).

    Returns:
        The correlation in [-1, 1]; NaN where either sequence is constant.

    Raises:
        ValueError: the sequences differ in length or hold fewer than two values.
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"spearman needs two sequences of equal length >= 2, got "
                         f"{len(x)} and {len(y)}")
    rx = _ranks(torch.tensor(x, dtype=torch.float64))
    ry = _ranks(torch.tensor(y, dtype=torch.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / denominator if denominator else float("nan")


class Evaluator:
    """Held-out fidelity and human-rated correlations of an encoder's sentence embeddings.

    Args:
        tokenizer: the encoder's tokenizer.
        dense: the dense encoder (its held-out embeddings are the reference).
        data: the text.
        max_length: tokens kept per held-out sentence.
        document_length: tokens kept per rated document.
    """

    def __init__(self, tokenizer: Any, dense: nn.Module, data: TextData, max_length: int,
                 document_length: int) -> None:
        self.held_out = token_batches(tokenizer, data.held_out, 64, max_length)
        self.documents = token_batches(tokenizer, data.documents, 16, document_length)
        self.document_pairs = data.document_pairs
        self.word_sets = data.word_sets
        words = sorted({w for pairs in data.word_sets.values() for a, b, _ in pairs
                        for w in (a, b)})
        self.word_index = {w: i for i, w in enumerate(words)}
        self.words: list[TokenBatch] = token_batches(tokenizer, words, 128, 16)
        self.dense = embed(dense, self.held_out)

    def cosine(self, model: nn.Module) -> float:
        """Mean cosine between ``model``'s and the dense held-out sentence embeddings."""
        return float((embed(model, self.held_out) * self.dense).sum(-1).mean())

    def __call__(self, model: nn.Module) -> dict[str, float]:
        """Every metric of :data:`METRICS` for ``model`` (a Hugging Face encoder)."""
        result = {"cosine": self.cosine(model)}
        docs = embed(model, self.documents)
        sims = [float(docs[i] @ docs[j]) for i, j, _ in self.document_pairs]
        result["lee50"] = spearman(sims, [h for _, _, h in self.document_pairs])
        words = embed(model, self.words)
        for name, pairs in self.word_sets.items():
            sims = [float(words[self.word_index[a]] @ words[self.word_index[b]])
                    for a, b, _ in pairs]
            result[name] = spearman(sims, [h for _, _, h in pairs])
        return result
