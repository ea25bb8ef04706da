"""The dense control row: the baseline given exactly a variant's recovery budget."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from compare_factories import bundle

import prunekit as pk
from prunekit import zoo
from prunekit.compare import CompareSettings, parse_variants, run_comparison
from prunekit.compare.control import CONTROL_NAME
from prunekit.compare.recovery import recover
from prunekit.compare.runner import load_dense
from prunekit.measure import evaluate_accuracy
from prunekit.report import flat_rows, render_markdown, to_csv


def _mlp() -> torch.nn.Module:
    return zoo.build("mlp")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[CompareSettings, dict]:
    out = tmp_path_factory.mktemp("control")
    settings = CompareSettings(tuple(parse_variants("unstructured-80")), out, model_ref="mlp",
                               quick=True, progress=False)
    return settings, run_comparison(settings, _mlp, bundle())


def test_the_control_gets_the_variants_budget_and_nothing_pruned(run) -> None:
    settings, data = run
    control, variant = data["control"], data["variants"]["unstructured-80"]
    assert control["name"] == CONTROL_NAME and control["status"] == "done"
    assert control["finetune"]["steps"] == variant["finetune"]["steps"] > 0
    assert control["finetune"]["epochs"] == variant["finetune"]["epochs"]
    assert control["params"] == control["nonzero_params"] == data["dense"]["params"]
    assert control["macs"] == data["dense"]["macs"]
    saved = pk.load(control["disk"]["path"])
    assert sum(p.numel() for p in saved.parameters()) == data["dense"]["params"]


def test_the_control_is_reproduced_by_the_shared_recovery_function(run) -> None:
    """Same recipe, data order and seed: recovering a copy of the dense baseline by hand
    gives the control's accuracy exactly (deterministic on one CPU thread)."""
    settings, data = run
    data_bundle = bundle()
    dense, _ = load_dense(_mlp, data_bundle, settings)
    model = copy.deepcopy(dense)
    recover(model, data_bundle, settings, teacher=copy.deepcopy(dense))
    assert evaluate_accuracy(model, data_bundle.test) == data["control"]["accuracy"]
    changed = any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                        dense.state_dict().values(), strict=True))
    assert changed  # the control was trained, not a copy of the baseline


def test_report_shows_loss_against_baseline_and_control(run) -> None:
    _, data = run
    rows = {r["variant"]: r for r in flat_rows(data)}
    dense, control, variant = rows["dense"], rows[CONTROL_NAME], rows["unstructured-80"]
    assert list(rows) == ["dense", CONTROL_NAME, "unstructured-80"]
    assert variant["delta_pt"] == pytest.approx((variant["acc_after"] - dense["acc_after"]) * 100)
    assert variant["delta_control_pt"] == pytest.approx(
        (variant["acc_after"] - control["acc_after"]) * 100)
    assert control["delta_pt"] == pytest.approx((control["acc_after"] - dense["acc_after"]) * 100)
    header = to_csv(flat_rows(data)).splitlines()[0].split(",")
    assert "delta_pt" in header and "delta_control_pt" in header
    report = render_markdown(data)
    assert "vs baseline pt" in report and "vs control pt" in report
    assert f"| {CONTROL_NAME} |" in report


def test_a_resumed_run_reuses_the_control(run, tmp_path: Path) -> None:
    settings, data = run
    again = run_comparison(settings, _mlp, bundle())
    assert again["control"] == data["control"]
