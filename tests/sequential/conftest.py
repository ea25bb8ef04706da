"""Checkpoint folders shared by the sequential tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from seq_models import gpt2_config, llama_config, save_checkpoint, save_tokenizer


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama saved in several shards, with a tokenizer."""
    folder = save_checkpoint(llama_config(), tmp_path_factory.mktemp("llama") / "src")
    save_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 LM (tied head), saved in one file."""
    return save_checkpoint(gpt2_config(), tmp_path_factory.mktemp("gpt2") / "src",
                           shard="10MB", cls="GPT2LMHeadModel")
