"""The comparison runner on a tiny model: results kept per variant, resume, interruption,
failures recorded, reports written."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from compare_factories import bundle

from prunekit import zoo
from prunekit.compare import CompareSettings, parse_variants, run_comparison
from prunekit.errors import ArtifactExistsError
from prunekit.report import flat_rows, to_csv, write_reports


def _settings(out: Path, variants: str) -> CompareSettings:
    return CompareSettings(tuple(parse_variants(variants)), out, model_ref="mlp", quick=True,
                           progress=False)


def _mlp() -> torch.nn.Module:
    return zoo.build("mlp")


def test_every_variant_is_measured_and_kept_on_disk(tmp_path: Path) -> None:
    data = run_comparison(_settings(tmp_path, "unstructured-80,nm-2:4"), _mlp, bundle())
    assert data["baseline"]["source"] == "trained"  # no checkpoint: trained, then cached
    assert (tmp_path / "baseline" / "model.safetensors").is_file()
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert set(on_disk["variants"]) == {"unstructured-80", "nm-2:4"}
    u = on_disk["variants"]["unstructured-80"]
    assert u["status"] == "done"
    assert u["nonzero_params"] < 0.25 * on_disk["dense"]["nonzero_params"]
    assert u["disk"]["bytes"] < on_disk["dense"]["disk"]["bytes"]
    assert (tmp_path / "models" / "unstructured-80" / "manifest.json").is_file()
    for row in flat_rows(on_disk):
        for key in ("acc_after", "params", "nonzero_params", "macs", "bytes_on_disk",
                    "peak_memory_bytes", "b1_ms", "b64_ms", "b1_speedup", "b64_speedup"):
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]), (row, key)


def test_interrupted_run_keeps_finished_variants_and_resumes(tmp_path: Path) -> None:
    seen: list[str] = []

    def stop_after_first(row: dict[str, Any]) -> None:
        seen.append(row["name"])
        if row["name"] == "unstructured-50":
            raise KeyboardInterrupt

    settings = _settings(tmp_path, "unstructured-50,unstructured-80")
    with pytest.raises(KeyboardInterrupt):
        run_comparison(settings, _mlp, bundle(), on_variant=stop_after_first)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["interrupted"] and list(saved["variants"]) == ["unstructured-50"]
    first = saved["variants"]["unstructured-50"]

    resumed = run_comparison(settings, _mlp, bundle())
    assert resumed["baseline"]["source"] == "cached"
    assert resumed["variants"]["unstructured-50"] == first  # reused, not re-run
    assert resumed["variants"]["unstructured-80"]["status"] == "done"
    assert not resumed["interrupted"]


def test_changed_settings_are_refused_then_discarded_only_with_fresh(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_comparison(_settings(tmp_path, "unstructured-50"), _mlp, bundle())
    before = (tmp_path / "results.json").read_text()
    other = CompareSettings(tuple(parse_variants("unstructured-50")), tmp_path, model_ref="mlp",
                            quick=True, progress=False, seed=1, lr=0.05)
    with pytest.raises(ArtifactExistsError) as info:
        run_comparison(other, _mlp, bundle())
    message = str(info.value)
    assert "seed: 0 -> 1" in message and "lr: 0.02 -> 0.05" in message
    assert "--fresh" in message and "another --out" in message
    assert "unstructured-50" in message  # names what --fresh would discard
    assert (tmp_path / "results.json").read_text() == before  # nothing touched

    with caplog.at_level(logging.WARNING, logger="prunekit"):
        data = run_comparison(other, _mlp, bundle(), fresh=True)
    assert data["settings"]["seed"] == 1
    assert data["baseline"]["source"] == "trained"  # the cached baseline went too
    discarded = [r.getMessage() for r in caplog.records if "--fresh: discarding" in r.getMessage()]
    assert any("unstructured-50" in m for m in discarded)
    assert any("baseline" in m for m in discarded)


def test_a_changed_setting_with_nothing_finished_is_no_loss(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(
        {"schema": 1, "settings": {"seed": 5}, "dense": None, "variants": {}}))
    data = run_comparison(_settings(tmp_path, "unstructured-50"), _mlp, bundle())
    assert data["variants"]["unstructured-50"]["status"] == "done"


def test_reports_name_every_variant_and_list_failures(tmp_path: Path) -> None:
    data = run_comparison(_settings(tmp_path, "unstructured-90"), _mlp, bundle())
    data["requested"].append("structured-50")
    data["variants"]["structured-50"] = {"name": "structured-50", "family": "structured",
                                         "status": "failed", "error": "no coupling rule"}
    paths = write_reports(data, tmp_path)
    names = {p.name for p in paths}
    assert {"report.md", "results.csv", "results.json", "layers.png"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
    report = (tmp_path / "report.md").read_text()
    assert "unstructured-90" in report and "structured-50: failed: no coupling rule" in report
    assert "## Unstructured vs structured, measured" in report
    csv_lines = to_csv(flat_rows(data)).splitlines()
    assert csv_lines[0].startswith("variant,family,status,acc_before")
    assert [line.split(",")[0] for line in csv_lines[1:]] == [
        "dense", "dense+recovery", "unstructured-90", "structured-50"]
