"""Accuracy, latency and peak-memory measurement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit.measure import evaluate_accuracy, peak_inference_memory, tensor_bytes, time_models


class _Oracle(nn.Module):
    """Returns one-hot logits of a fixed prediction per sample (input column 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x[:, 0].long(), 3).float()


def test_accuracy_counts_argmax_matches() -> None:
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    right = [(labels.float().unsqueeze(1), labels)]
    assert evaluate_accuracy(_Oracle(), right) == 1.0
    wrong = [(torch.zeros(6, 1), labels)]  # always predicts class 0: 2 of 6 right
    assert evaluate_accuracy(_Oracle(), wrong) == pytest.approx(2 / 6)
    assert evaluate_accuracy(_Oracle(), []) == 0.0


def test_accuracy_restores_training_mode() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    evaluate_accuracy(model, [(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))])
    assert model.training and model[1].training


def test_interleaved_timing_reports_every_model_with_consistent_stats() -> None:
    small, big = nn.Linear(64, 64), nn.Sequential(*[nn.Linear(64, 64) for _ in range(20)])
    stats = time_models({"small": small, "big": big}, torch.randn(8, 64), threads=1, warmup=1,
                        rounds=4, calls_per_round=2)
    assert set(stats) == {"small", "big"}
    for s in stats.values():
        assert s.samples == 8 and s.batch == 8 and s.threads == 1
        assert s.median_ms > 0 and s.iqr_ms >= 0
    assert torch.get_num_threads() == 1  # restored (conftest sets 1)


def test_timing_leaves_the_model_untouched_and_supports_channels_last() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).train()
    before = {k: v.clone() for k, v in conv.state_dict().items()}
    stats = time_models({"c": conv}, torch.randn(2, 3, 16, 16), warmup=1, rounds=2,
                        channels_last={"c": True})
    assert stats["c"].channels_last
    assert conv.training
    assert all(torch.equal(before[k], v) for k, v in conv.state_dict().items())


def test_peak_memory_counts_weights_and_grows_with_batch() -> None:
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3))
    small = peak_inference_memory(model, torch.randn(1, 1, 32, 32))
    large = peak_inference_memory(model, torch.randn(16, 1, 32, 32))
    assert small["weights_bytes"] == tensor_bytes(model) == 4 * (16 * 9 + 16 + 16 * 16 * 9 + 16)
    one_output = 16 * 16 * 32 * 32 * 4  # the first conv's output at batch 16, float32
    assert large["activations_bytes"] >= one_output
    assert large["activations_bytes"] > small["activations_bytes"]
    assert large["peak_bytes"] == large["weights_bytes"] + large["activations_bytes"]
