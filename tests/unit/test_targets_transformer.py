r"""``ignore=`` in TransformerStructured follows the rule of every other pruning path."""

from __future__ import annotations

import re

import pytest
import torch

import prunekit as pk

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.hf


def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64,
    )
    return transformers.BertModel(config).eval()


def widths(result: pk.PruneResult) -> list[int]:
    return [layer.intermediate.dense.out_features for layer in result.model.encoder.layer]


def prune(ignore: object) -> pk.PruneResult:
    return pk.prune(bert(), pk.TransformerStructured(neurons=0.5), ignore=ignore)


def test_a_compiled_regex_keeps_the_blocks_it_matches() -> None:
    assert widths(prune([re.compile(r"encoder\.layer\.0")])) == [64, 32]


def test_a_name_keeps_its_block() -> None:
    assert widths(prune(["encoder.layer.1"])) == [32, 64]


def test_a_bare_string_is_one_entry() -> None:
    assert widths(prune("encoder.layer.0")) == [64, 32]


def test_a_bare_compiled_regex_is_one_entry() -> None:
    assert widths(prune(re.compile(r"encoder\.layer\.0"))) == [64, 32]


def test_an_entry_matching_nothing_is_a_target_error() -> None:
    with pytest.raises(pk.TargetError, match="did you mean"):
        prune(["encoder.layer.00"])
