"""Structured pruning of torchvision detectors at 30%: heads, structure, save/load.

Per model (random weights, 64-pixel images, eval mode), pruned with every candidate box kept
(``prune_detector``) so each image returns the same number of boxes before and after:

- the output keeps its structure (one dict per image, same keys) and every key keeps its
  trailing shape (boxes 4, masks 1 x H x W, keypoints K x 3);
- every prediction head returns the same trailing shapes (class, anchor and box widths are
  never pruned);
- the backbone / FPN feature maps keep their names and spatial sizes;
- the pruned model also runs with its own thresholds and proposal counts (restored after
  pruning);
- parameters drop;
- ``pk.save`` then ``pk.load`` gives exactly the same feature maps, head outputs and
  detections (bit for bit, same CPU and threads).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from detection_models import CASES, Observed, flat, images, observe, structure

import prunekit as pk
from prunekit.detection import every_candidate, prune_detector, settings
from prunekit.measure.counting import count_params


def _trailing(seen: Observed) -> dict[str, list[tuple[int, ...]]]:
    return {name: [tuple(t.shape[1:]) for t in tensors] for name, tensors in seen.heads.items()}


def _assert_same(a: Observed, b: Observed) -> None:
    """Bit-for-bit equal detections, head outputs and feature maps."""
    for x, y in [(flat(a.detections), flat(b.detections)), (list(a.features.values()),
                 list(b.features.values()))] + [(a.heads[k], b.heads[k]) for k in a.heads]:
        assert len(x) == len(y)
        assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_pruned_detector_keeps_heads_structure_and_round_trips(name: str, tmp_path: Path) -> None:
    model, batch = CASES[name](), images()
    original = settings(model)
    with every_candidate(model):
        dense = observe(model, batch)

    result = prune_detector(model, pk.Structured(sparsity=0.3), batch)
    pruned = result.model
    assert settings(pruned) == settings(model) == original
    assert count_params(pruned) < 0.8 * count_params(model)

    with every_candidate(pruned):
        after = observe(pruned, batch)
    assert structure(after.detections) == structure(dense.detections)
    assert [len(d["boxes"]) for d in after.detections] == [
        len(d["boxes"]) for d in dense.detections]
    assert _trailing(after) == _trailing(dense)
    assert list(after.features) == list(dense.features)
    assert [m.shape[2:] for m in after.features.values()] == [
        m.shape[2:] for m in dense.features.values()]
    assert all(bool(torch.isfinite(t).all())
               for t in flat(after.detections) + list(after.features.values()))
    own = observe(pruned, batch).detections  # own thresholds: any number of boxes
    assert structure(own) == structure(dense.detections)

    folder = pk.save(result, tmp_path / name)
    loaded = pk.load(folder, build=copy.deepcopy(model)).eval()
    assert settings(loaded) == original
    with every_candidate(loaded):
        _assert_same(observe(loaded, batch), after)
