"""The global allocation computed from weights read one at a time equals the in-memory one."""

from __future__ import annotations

import pytest
import torch

from prunekit.errors import SpecError
from prunekit.oneshot.allocation import magnitude_sparsities
from prunekit.sequential import allocation
from prunekit.sequential.allocation import streamed_magnitude_sparsities


def _weights(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(40, 30, generator=generator),
            "b": torch.randn(50, 20, generator=generator) * 3,
            "c": torch.round(torch.randn(64, generator=generator) * 2)}  # many ties


def _streamed(weights: dict[str, torch.Tensor], target: float) -> dict[str, float]:
    reads: list[str] = []

    def load(key: str) -> torch.Tensor:
        reads.append(key)
        return weights[key].clone()

    found = streamed_magnitude_sparsities(list(weights), {k: w.numel() for k, w in
                                                          weights.items()}, load, target)
    assert reads == list(weights) * 2  # each weight read twice, one at a time
    return found


@pytest.mark.parametrize("target", [0.1, 0.5, 0.93, 0.999])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_the_in_memory_allocation(target: float, seed: int) -> None:
    weights = _weights(seed)
    assert _streamed(weights, target) == magnitude_sparsities(weights, target)


def test_zero_target_reads_nothing() -> None:
    def load(key: str) -> torch.Tensor:
        raise AssertionError(f"{key} was read")

    assert streamed_magnitude_sparsities(["a", "b"], {"a": 3, "b": 4}, load, 0.0) == {
        "a": 0.0, "b": 0.0}


def test_ties_at_the_threshold_go_in_layer_order() -> None:
    weights = {"x": torch.ones(4), "y": torch.ones(4), "z": torch.full((2,), 5.0)}
    assert _streamed(weights, 0.5) == {"x": 1.0, "y": 0.25, "z": 0.0}
    assert magnitude_sparsities(weights, 0.5) == {"x": 1.0, "y": 0.25, "z": 0.0}


def test_a_missed_bracket_falls_back_to_every_score(monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _weights(3)
    monkeypatch.setattr(allocation, "bracket", lambda *_: (100.0, 200.0))  # far too high
    found = streamed_magnitude_sparsities(list(weights), {k: w.numel() for k, w in
                                          weights.items()}, weights.__getitem__, 0.5)
    assert found == magnitude_sparsities(weights, 0.5)


def test_non_finite_weight_is_named() -> None:
    weights = {"a": torch.ones(4), "b": torch.tensor([1.0, float("nan")])}
    with pytest.raises(SpecError, match="b has non-finite"):
        streamed_magnitude_sparsities(list(weights), {"a": 4, "b": 2}, weights.__getitem__,
                                      0.5)
