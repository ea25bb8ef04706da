"""Sensitivity scan: zeroing a group's channels is what cutting them does (BatchNorm models),
the model is left alone, the table and plot are produced, and a budget with calibration
batches keeps the groups the scan finds sensitive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_state import assert_same_state, model_state

import prunekit as pk
import prunekit.structured as structured
from prunekit.budget.sensitivity import GroupSensitivity, SensitivityReport, scan
from prunekit.graph.groups import analyze
from prunekit.importance.channel import channel_scores
from prunekit.inputs import model_outputs
from prunekit.select.structured import GroupChoice, removal_order
from prunekit.structured import remove_channels


def relative_change(model, cut, batches) -> float:
    total = 0.0
    for batch in batches:
        ref, out = model_outputs(model, batch)[0], model_outputs(cut, batch)[0]
        total += float((out - ref).pow(2).mean() / ref.pow(2).mean())
    return total / len(batches)


def test_the_scan_equals_cutting_the_channels() -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    batches = [x, pk.zoo.example_inputs("resnet", seed=1)]
    before = model_state(model)
    analysis = analyze(model, x)
    scores = channel_scores("l1", analysis, model)
    report = scan(model, analysis, scores, batches, fractions=(0.5,), progress=False)
    assert_same_state(before, model_state(model))
    assert len(report.groups) == 6  # every group but the frozen classifier outputs
    for found in report.groups:
        group = analysis.groups[found.group]
        order = removal_order(GroupChoice(group.channels, group.frozen, group.unit), scores)
        removed = torch.zeros(analysis.num_channels, dtype=torch.bool)
        removed[order[: group.size // 2]] = True
        cut = remove_channels(model, x, analysis, removed)
        assert found.loss[0] == pytest.approx(relative_change(model, cut, batches), rel=1e-4,
                                              abs=1e-7)


def test_table_plot_and_dict(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    report = pk.sensitivity(model, x, [x], progress=False)
    lines = report.table().splitlines()
    assert lines[0].split()[:2] == ["group", "size"] and len(lines) == 2 + len(report.groups)
    assert any("(+" in g.name for g in report.groups)  # a residual group names its producers
    assert report.plot(tmp_path / "scan.png").stat().st_size > 1000
    assert report.to_dict()["fractions"] == [0.75, 0.5, 0.25]


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"fractions": (1.0,)}, pk.SpecError, "fractions must be in (0, 1)"),
    ({"fractions": ()}, pk.SpecError, "fractions must be in (0, 1)"),
    ({"importance": "taylor"}, pk.SpecError, "unknown importance 'taylor'"),
])
def test_bad_scans_are_refused(kwargs, error, message) -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        pk.sensitivity(model, x, [x], **kwargs)


def test_no_batches_is_a_calibration_error() -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    with pytest.raises(pk.CalibrationError, match="needs calibration batches"):
        pk.sensitivity(model, x, [])


def test_a_budget_with_calibration_keeps_what_the_scan_finds_sensitive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    target = pk.Structured(target=pk.MACs(0.4))
    plain = pk.prune(model, target, x)
    victim = "stages.2.0.conv1"  # cut hard without data
    assert plain.model.get_submodule(victim).out_channels < 64

    def rigged(model, analysis, scores, batches, *args, **kwargs) -> SensitivityReport:
        groups = tuple(
            GroupSensitivity(g.index, "g", g.size, (0.5,),
                             (100.0 if any(m.key == f"{victim}.weight" for m in g.members)
                              else 0.01,))
            for g in analysis.groups if not bool(g.frozen.all()))
        return SensitivityReport((0.5,), len(batches), groups)

    monkeypatch.setattr(structured, "scan", rigged)
    weighted = pk.prune(model, target, x, calibration=[x])
    assert weighted.model.get_submodule(victim).out_channels == 64
    assert weighted.budget.macs_ratio == pytest.approx(0.4, rel=0.02)


def test_calibration_without_a_target_or_taylor_is_still_refused() -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    with pytest.raises(pk.SpecError, match="does not use calibration="):
        pk.prune(model, pk.Structured(sparsity=0.5), x, calibration=[x])


PLOT_SCRIPT = """
import json, sys
import matplotlib
before = matplotlib.get_backend()
import prunekit as pk
model, x = pk.zoo.build("mlp").eval(), pk.zoo.example_inputs("mlp")
pk.sensitivity(model, x, [x], progress=False).plot(sys.argv[1])
print(json.dumps({"before": before, "after": matplotlib.get_backend(),
                  "pyplot": "matplotlib.pyplot" in sys.modules}))
"""


def test_the_plot_keeps_the_callers_matplotlib_backend(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    env = {**os.environ, "MPLBACKEND": "svg"}
    done = subprocess.run([sys.executable, "-c", PLOT_SCRIPT, str(tmp_path / "scan.png")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"before": "svg", "after": "svg", "pyplot": False}
    assert (tmp_path / "scan.png").read_bytes()[:4].hex() == "89504e47"
