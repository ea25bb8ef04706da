"""BatchNorm running statistics at the start of fine-tuning: refitting them after pruning
restores eval-mode accuracy, and does not change what fine-tuning makes of the model."""

from __future__ import annotations

import copy

import torch
from torch import nn

import prunekit as pk
from prunekit.data import TensorLoader
from prunekit.recover import RecoveryConfig, finetune, recalibrate_batchnorm


def _quadrants(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 images labelled by their brightest quadrant (4 classes)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=gen)
    y = x.view(n, 2, 4, 2, 4).sum(dim=(2, 4)).reshape(n, 4).argmax(dim=1)
    return x, y


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(dim=1) == y).float().mean())


def _pruned_bn_net(train: TensorLoader) -> tuple[nn.Module, nn.Module]:
    """A small conv net with BatchNorm, trained, and its 90% global-magnitude pruned copy."""
    torch.manual_seed(0)
    dense = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 4),
    )
    optimiser = torch.optim.Adam(dense.parameters(), lr=1e-2)
    dense.train()
    for _ in range(8):
        for x, y in train:
            optimiser.zero_grad()
            nn.functional.cross_entropy(dense(x), y).backward()
            optimiser.step()
    dense.eval()
    spec = pk.Unstructured(sparsity=0.9, scope="global", importance="l1")
    return dense, pk.prune(copy.deepcopy(dense), spec).model


def test_refitted_statistics_restore_accuracy_but_not_the_fine_tuned_model() -> None:
    x, y = _quadrants(1024, seed=0)
    tx, ty = _quadrants(512, seed=1)
    train = TensorLoader(x, y, 64, shuffle=True, seed=0)
    dense, stale = _pruned_bn_net(train)
    refitted = copy.deepcopy(stale)
    assert recalibrate_batchnorm(refitted, train, 8) == 8
    dense_acc, stale_acc = _accuracy(dense, tx, ty), _accuracy(stale, tx, ty)
    refitted_acc = _accuracy(refitted, tx, ty)
    assert dense_acc > 0.85
    # the stale statistics cost over 10 points; refitted, the pruned model is near dense
    assert refitted_acc > stale_acc + 0.1 and refitted_acc > dense_acc - 0.05, \
        (stale_acc, refitted_acc, dense_acc)

    config = RecoveryConfig(epochs=4, lr=0.02)  # 64 steps
    for model in (stale, refitted):
        train.epoch = 0  # the same batches for both
        finetune(model, train, config, progress=False)
    after_stale, after_refit = stale.state_dict(), refitted.state_dict()
    for key, value in after_stale.items():
        if "running" in key:  # 0.9 ** 64 of the starting difference is left
            assert torch.allclose(value, after_refit[key], rtol=1e-2, atol=1e-3), key
        elif value.is_floating_point():  # training never read the running statistics
            assert torch.allclose(value, after_refit[key], atol=1e-6), key
    assert _accuracy(stale, tx, ty) == _accuracy(refitted, tx, ty)
