"""Budget tests: a fresh latency-table cache per test (never the user's), and the pipeline
fault-injection helpers importable here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(folder))
    return folder
