"""Latency targets with deterministic timers: the table is cached per device and layer
signature, the measured result is reported and re-cut on a miss, devices and inputs that
cannot be timed are refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_state import assert_same_state, model_state
from torch import nn

import prunekit as pk
from prunekit.budget import latency_table, planner
from prunekit.budget.latency_table import TableCache
from prunekit.budget.layer_calls import LayerCall, layer_calls
from prunekit.budget.timing import PairTiming, batched
from prunekit.measure.counting import count_macs


def fake_layer_ms(call: LayerCall, n_in: int, n_out: int, target: pk.Latency) -> float:
    """Proportional to the layer's MACs (a norm: to its elements), plus a fixed overhead."""
    s = call.settings
    spatial = 1
    for d in call.shape[2:] if call.kind != "Linear" else call.shape[1:-1]:
        spatial *= d
    rows = call.shape[0] * spatial
    if "out" not in s:
        return 1e-5 * rows * n_in + 1e-3
    groups = n_in if s.get("groups", 1) == s["in"] and s.get("groups", 1) > 1 else s.get(
        "groups", 1)
    kernel = 1
    for k in s.get("kernel", ()):
        kernel *= k
    return 1e-5 * rows * n_out * n_in / groups * kernel + 1e-3


def fake_pair(dense: nn.Module, pruned: nn.Module, inputs, target: pk.Latency) -> PairTiming:
    """Latency proportional to MACs, measured on the timing copies themselves."""
    return PairTiming(float(count_macs(dense, inputs)), float(count_macs(pruned, inputs)),
                      target.rounds)


@pytest.fixture
def timers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Every (layer signature, inputs, outputs) timed."""
    timed: list[tuple[str, int, int]] = []

    def layer(call: LayerCall, n_in: int, n_out: int, target: pk.Latency) -> float:
        timed.append((call.signature(), n_in, n_out))
        return fake_layer_ms(call, n_in, n_out, target)

    monkeypatch.setattr(latency_table, "time_layer", layer)
    monkeypatch.setattr(planner, "time_pair", fake_pair)
    return timed


def test_a_latency_target_is_met_and_reported(timers: list[tuple[str, int, int]],
                                              _cache_dir: Path) -> None:
    model, x = pk.zoo.build("fmnist_resnet").eval(), pk.zoo.example_inputs("fmnist_resnet")
    target = pk.Latency(0.5, batch=16, threads=1, rounds=3)
    result = pk.prune(model, pk.Structured(target=target), x)
    report = result.budget
    assert report.latency is not None and report.latency.batch == 16
    assert report.latency.rounds == 3 and report.latency.threads == 1
    assert report.achieved == pytest.approx(0.5, rel=0.10)
    assert report.achieved == pytest.approx(report.latency.pruned_ms / report.latency.dense_ms)
    assert report.latency.table_timed == len(timers) > 0
    assert json.loads(result.plan.to_json())["budget"]["latency"]["batch"] == 16
    files = list((_cache_dir / "latency").glob("*.json"))
    assert len(files) == 1 and "torch" in files[0].name


def test_the_table_is_cached_and_keyed_by_what_is_timed(timers: list[tuple[str, int, int]]) -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    pk.prune(model, pk.Structured(target=pk.Latency(0.6, batch=8, threads=1)), x)
    first = len(timers)
    again = pk.prune(model, pk.Structured(target=pk.Latency(0.6, batch=8, threads=1)), x)
    assert len(timers) == first and again.budget.latency.table_timed == 0
    pk.prune(model, pk.Structured(target=pk.Latency(0.6, batch=4, threads=1)), x)
    assert len(timers) == 2 * first  # another batch: every layer timed again
    pk.prune(model, pk.Structured(target=pk.Latency(0.6, batch=8, threads=2)), x)
    assert len(timers) == 3 * first  # other threads too


def test_identical_layers_are_timed_once(timers: list[tuple[str, int, int]]) -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(2, 16)
    pk.prune(model, pk.Structured(target=pk.Latency(0.6, batch=8, threads=1)), x)
    calls = [c for c in layer_calls(model, x, 2, 8) if c.kind == "Linear"]
    assert [c.shape for c in calls] == [(8, 16), (8, 32), (8, 32), (8, 32)]
    assert calls[1].signature() == calls[2].signature()
    assert len(timers) == len(set(timers))  # layers 2 and 3 share their timings
    assert len({t for t in timers if t[0] == calls[1].signature()}) == 7  # full + 3 + 3


def test_an_unreadable_table_is_measured_again(timers: list[tuple[str, int, int]],
                                               _cache_dir: Path) -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    target = pk.Latency(0.6, batch=8, threads=1)
    pk.prune(model, pk.Structured(target=target), x)
    first = len(timers)
    path = TableCache.open("cpu").path
    path.write_text("{not json", encoding="utf-8")
    pk.prune(model, pk.Structured(target=target), x)
    assert len(timers) == 2 * first


def test_a_measured_miss_is_cut_again(timers: list[tuple[str, int, int]],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The table under-estimates by a lot the first time: the budget is scaled and re-cut."""
    calls = []

    def optimistic(dense, pruned, inputs, target) -> PairTiming:
        timing = fake_pair(dense, pruned, inputs, target)
        calls.append(timing.ratio)
        slower = 1.3 if len(calls) == 1 else 1.0
        return PairTiming(timing.dense_ms, timing.pruned_ms * slower, timing.rounds)

    monkeypatch.setattr(planner, "time_pair", optimistic)
    model, x = pk.zoo.build("fmnist_resnet").eval(), pk.zoo.example_inputs("fmnist_resnet")
    result = pk.prune(model, pk.Structured(target=pk.Latency(0.5, batch=8, threads=1)), x)
    assert result.budget.refinements >= 1
    assert calls[1] < calls[0]  # the second cut is deeper
    assert result.budget.achieved == pytest.approx(0.5, rel=0.10)


def test_latency_needs_example_inputs() -> None:
    with pytest.raises(pk.ExampleInputError, match="a latency target times the model"):
        pk.prune(pk.zoo.build("resnet"), pk.Structured(target=pk.Latency(0.5)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("inplace", [True, False])
def test_a_device_the_table_cannot_run_on_is_refused_first(inplace: bool,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import prunekit.structured as structured

    def never(*_args, **_kwargs):
        raise AssertionError("analysed before the device was checked")

    monkeypatch.setattr(structured, "_analyze", never)
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    before = model_state(model)
    with pytest.raises(pk.SpecError, match="'cuda' is not available here"):
        pk.prune(model, pk.Structured(target=pk.Latency(0.5, device="cuda")), x,
                 inplace=inplace)
    assert_same_state(before, model_state(model))


def test_an_unreachable_latency_names_the_least(timers: list[tuple[str, int, int]]) -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    before = model_state(model)
    with pytest.raises(pk.TargetError, match=r"(?s)Latency\(0.01\) cannot be met.*ask for Latency"):
        pk.prune(model, pk.Structured(target=pk.Latency(0.01, batch=4, threads=1)), x,
                 inplace=True)
    assert_same_state(before, model_state(model))


def test_activations_follow_the_width_of_the_layer_they_follow() -> None:
    model, x = pk.zoo.build("resnet").eval(), pk.zoo.example_inputs("resnet")
    calls = layer_calls(model, x, 2, 8)
    relus = [c for c in calls if c.kind == "ReLU"]
    assert relus and all(c.settings["elementwise"] for c in relus)
    first = relus[0]
    assert first.weight == "stem.1.weight" and first.settings["in"] == 16
    assert first.shape == (8, 16, 32, 32) and first.module is not None


def test_batched_inputs_repeat_rows_and_convert_floats() -> None:
    ids = torch.tensor([[1, 2], [3, 4]])
    inputs = {"x": torch.randn(2, 3), "ids": ids}
    out = batched(inputs, 5, torch.device("cpu"), torch.bfloat16)
    assert out["x"].shape == (5, 3) and out["x"].dtype == torch.bfloat16
    assert out["ids"].dtype == torch.long and out["ids"][4].tolist() == [1, 2]


def test_the_real_timer_returns_positive_milliseconds() -> None:
    call = LayerCall("fc", "Linear", (("bias", True), ("in", 8), ("out", 4)), (2, 8),
                     "fc.weight")
    ms = latency_table.time_layer(call, 8, 4, pk.Latency(0.5, threads=1))
    assert ms > 0


class ChannelsFirstNorm(nn.LayerNorm):
    """Like torchvision's LayerNorm2d: a LayerNorm subclass normalising dim 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SubclassedLinear(nn.Linear):
    """Like MultiheadAttention's NonDynamicallyQuantizableLinear."""


class Subclassed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.norm = ChannelsFirstNorm(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc1 = SubclassedLinear(16, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(torch.relu(self.norm(self.conv1(x)))).mean(dim=(2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


def test_subclassed_layers_are_timed_as_their_torch_class(
    timers: list[tuple[str, int, int]],
) -> None:
    """A LayerNorm subclass over dim 1 and a Linear subclass used to fail the table."""
    model, x = Subclassed().eval(), torch.randn(2, 3, 8, 8)
    calls = {c.name: c for c in layer_calls(model, x, 2, 4)}
    assert calls["norm"].kind == "LayerNorm" and calls["norm"].settings["dim"] == 1
    assert calls["fc1"].kind == "Linear"
    target = pk.Latency(0.5, batch=4, threads=1)
    for call in calls.values():  # the real timer builds and runs each at a narrower width
        n_out = call.settings.get("out", call.settings["in"]) // 2
        assert latency_table.time_layer(call, call.settings["in"] // 2, n_out, target) > 0
    result = pk.prune(model, pk.Structured(target=target), x)
    assert result.budget.latency is not None and result.budget.latency.table_timed > 0
