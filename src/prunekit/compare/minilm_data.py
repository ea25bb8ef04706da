"""Real English text and human similarity judgements for the sentence-encoder comparison.

Sources (all offline; installed by ``scripts/setup.sh``):

- calibration text: Debian ``fortunes`` quotations (``/usr/share/games/fortunes``);
- distillation text: other fortunes quotations, then the usage examples quoted in Debian
  ``wordnet-base`` glosses;
- held-out evaluation text: sentences of gensim's Lee news corpus (``lee_background.cor``);
- human ratings: gensim's Lee 50-document similarity matrix, WordSim-353 and SimLex-999.

The training sources (quotations, dictionary examples) and the evaluation ones (Australian
news, word lists) are disjoint. ``benchmarks/eval_minilm.py`` reads the same sources.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError

FORTUNES = Path("/usr/share/games/fortunes")
WORDNET = Path("/usr/share/wordnet")
WORD_SETS = {"ws353": "wordsim353.tsv", "simlex": "simlex999.txt"}

DocumentPair = tuple[int, int, float]
WordPair = tuple[str, str, float]


@dataclass(frozen=True)
class TextData:
    """The text a sentence-encoder comparison calibrates, distils and evaluates on.

    Attributes:
        calibration: sentences for calibrated pruning (Wanda, SparseGPT, activation ranks).
        train: sentences the pruned models are distilled on (disjoint from calibration).
        held_out: sentences whose embeddings are compared with the dense model's.
        documents: documents rated for similarity by people.
        document_pairs: ``(i, j, human similarity)`` for document pairs.
        word_sets: set name -> ``(word, word, human similarity)`` pairs.
        name: shown in reports.
        info: sizes and sources, for the report.
    """

    calibration: list[str]
    train: list[str]
    held_out: list[str]
    documents: list[str]
    document_pairs: list[DocumentPair]
    word_sets: dict[str, list[WordPair]]
    name: str = "text"
    info: dict[str, Any] = field(default_factory=dict)


def gensim_data() -> Path:
    """gensim's bundled test data folder (Lee corpus, WordSim-353, SimLex-999).

    Raises:
        DataError: gensim is not installed.
    """
    try:
        import gensim
    except ImportError as exc:
        raise DataError("gensim is not installed (its test data holds the Lee corpus, "
                        "WordSim-353 and SimLex-999)", "pip install gensim") from exc
    return Path(gensim.__file__).parent / "test" / "test_data"


def _read(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}", "reinstall the package that ships it "
                        "(scripts/setup.sh installs them all)") from exc


def fortunes(min_chars: int = 40, max_chars: int = 300, seed: int = 0) -> list[str]:
    """Every fortune quotation of a sensible length, whitespace-normalised, shuffled.

    Raises:
        DataError: the ``fortunes`` package is not installed.
    """
    if not FORTUNES.is_dir():
        raise DataError(f"fortunes are missing ({FORTUNES})", "apt-get install -y fortunes")
    texts = set()
    for path in sorted(FORTUNES.iterdir()):
        if path.suffix or not path.is_file():
            continue  # skip .dat index files and .u8 duplicates
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in text.split("\n%\n"):
            normal = " ".join(entry.split())
            if min_chars <= len(normal) <= max_chars:
                texts.add(normal)
    ordered = sorted(texts)
    random.Random(seed).shuffle(ordered)
    return ordered


def wordnet_examples(min_chars: int = 30, max_chars: int = 300, seed: int = 0) -> list[str]:
    """The quoted usage examples of WordNet's glosses, deduplicated and shuffled.

    Raises:
        DataError: the ``wordnet-base`` package is not installed.
    """
    if not WORDNET.is_dir():
        raise DataError(f"WordNet is missing ({WORDNET})", "apt-get install -y wordnet-base")
    texts: set[str] = set()
    for part in ("noun", "verb", "adj", "adv"):
        for line in _read(WORDNET / f"data.{part}", "latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # the licence header; entries carry their gloss after "|"
            gloss = line.split("|", 1)[1]
            texts.update(q for q in re.findall(r'"([^"]+)"', gloss)
                         if min_chars <= len(q) <= max_chars)
    ordered = sorted(texts)
    random.Random(seed).shuffle(ordered)
    return ordered


def lee_sentences(limit: int = 512) -> list[str]:
    """The first ``limit`` sentences (30-300 characters) of the Lee background news corpus."""
    text = _read(gensim_data() / "lee_background.cor", "cp1252")
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text)]
    return [s for s in sentences if 30 <= len(s) <= 300][:limit]


def lee_documents() -> tuple[list[str], list[DocumentPair]]:
    """The 50 Lee documents and their human similarity for every pair ``i < j``."""
    data = gensim_data()
    docs = [line.strip() for line in _read(data / "lee.cor", "cp1252").splitlines()
            if line.strip()]
    rows = [[float(v) for v in line.split()]
            for line in _read(data / "similarities0-1.txt", "utf-8").splitlines() if line.strip()]
    pairs = [(i, j, rows[i][j]) for i in range(len(rows)) for j in range(i + 1, len(rows))]
    return docs, pairs


def word_pairs(file_name: str) -> list[WordPair]:
    """WordSim-353 (``wordsim353.tsv``) or SimLex-999 (``simlex999.txt``) word pairs."""
    pairs = []
    for line in _read(gensim_data() / file_name, "utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        a, b, score = line.split("\t")[:3]
        pairs.append((a, b, float(score)))
    return pairs


def minilm_text(calibration: int, train: int, held_out: int, seed: int = 0) -> TextData:
    """The real text of the MiniLM comparison, in the sizes asked for.

    Args:
        calibration: fortunes quotations for calibration.
        train: distillation sentences: the next fortunes quotations, then WordNet usage
            examples once the quotations run out.
        held_out: Lee news sentences for the fidelity to the dense embeddings.
        seed: shuffles the quotations and examples.

    Returns:
        The :class:`TextData`.

    Raises:
        DataError: a source is missing (names it and the package to install).
    """
    quotes = fortunes(seed=seed)
    rest = quotes[calibration:]
    extra = wordnet_examples(seed=seed) if train > len(rest) else []
    docs, doc_pairs = lee_documents()
    info = {"calibration": f"{calibration} fortunes quotations",
            "train": f"{train} sentences (fortunes, then WordNet usage examples)",
            "held_out": f"{held_out} Lee news sentences",
            "human": "Lee 50 documents (1225 pairs), WordSim-353, SimLex-999"}
    return TextData(
        calibration=quotes[:calibration], train=(rest + extra)[:train],
        held_out=lee_sentences(held_out), documents=docs, document_pairs=doc_pairs,
        word_sets={name: word_pairs(file) for name, file in WORD_SETS.items()},
        name="English text (fortunes, WordNet, Lee news)", info=info,
    )
