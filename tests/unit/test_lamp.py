"""LAMP scores (``importance="lamp"``): the per-layer score, its global ranking, and the
combinations it is refused in."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.importance import weight_scores
from prunekit.specs import spec_from_dict


def brute_lamp(weight: torch.Tensor) -> torch.Tensor:
    """LAMP by definition, one weight at a time: ``w_u^2`` over the sum of ``w_v^2`` of every
    ``v`` at or after ``u`` in the order (``w^2``, position)."""
    flat = weight.reshape(-1).double().square().tolist()
    keys = [(value, i) for i, value in enumerate(flat)]
    scores = []
    for key in keys:
        tail = sum(value for value, i in keys if (value, i) >= key)
        scores.append(key[0] / tail if tail > 0 else 0.0)
    return torch.tensor(scores, dtype=torch.float32).reshape(weight.shape)


def test_hand_checked_scores() -> None:
    # ascending w^2: 0, 1, 4, 9 -> tails 14, 14, 13, 9
    scores = weight_scores("lamp", torch.tensor([3.0, -1.0, 2.0, 0.0]))
    assert torch.allclose(scores, torch.tensor([1.0, 1 / 14, 4 / 13, 0.0]))


def test_equal_weights_are_ranked_by_position() -> None:
    # w^2 = 1, 1, 1: tails 3, 2, 1 in position order
    scores = weight_scores("lamp", torch.tensor([1.0, -1.0, 1.0]))
    assert torch.allclose(scores, torch.tensor([1 / 3, 1 / 2, 1.0]))


def test_an_all_zero_layer_scores_zero() -> None:
    assert weight_scores("lamp", torch.zeros(2, 3)).eq(0).all()


@pytest.mark.parametrize("shape", [(7,), (4, 5), (3, 2, 3, 3)])
def test_scores_equal_the_brute_force_definition(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    weight = torch.randn(shape)
    weight.view(-1)[::3] = 0.5  # ties
    assert torch.allclose(weight_scores("lamp", weight), brute_lamp(weight), atol=1e-6)


def test_largest_weight_of_each_layer_scores_one_whatever_its_scale() -> None:
    torch.manual_seed(0)
    for scale in (1e-4, 1.0, 1e3):
        scores = weight_scores("lamp", torch.randn(16, 8) * scale)
        assert scores.max().item() == pytest.approx(1.0)
        assert (scores > 0).all() and (scores <= 1).all()


def two_layers(small: float) -> nn.Sequential:
    """Two Linear layers, the first with weights ``small`` times the scale of the second."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))
    with torch.no_grad():
        model[0].weight.mul_(small)
    return model


def test_global_lamp_equals_a_brute_force_ranking() -> None:
    model = two_layers(0.01)
    weights = {"0": model[0].weight.detach(), "2": model[2].weight.detach()}
    scores = {name: brute_lamp(w) for name, w in weights.items()}
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = round(0.8 * flat.numel())
    cut = flat.sort().values[k - 1]
    spec = pk.Unstructured(sparsity=0.8, scope="global", importance="lamp")
    pruned = pk.finalize(pk.prune(model, spec).model)
    for name, s in scores.items():
        kept = getattr(pruned, name).weight.detach() != 0
        assert torch.equal(kept, s > cut)


def test_every_layer_keeps_its_largest_weight_where_l1_empties_the_small_one() -> None:
    model = two_layers(1e-3)
    l1 = pk.finalize(pk.prune(model, pk.Unstructured(sparsity=0.75, scope="global")).model)
    assert l1[0].weight.count_nonzero() == 0  # magnitude ranking removes the small layer
    spec = pk.Unstructured(sparsity=0.75, scope="global", importance="lamp")
    lamp = pk.finalize(pk.prune(model, spec).model)
    for index in (0, 2):
        original, kept = model[index].weight.detach(), lamp[index].weight.detach()
        top = original.abs().argmax()
        assert kept.view(-1)[top] == original.view(-1)[top] != 0
    total = model[0].weight.numel() + model[2].weight.numel()
    nonzero = int(lamp[0].weight.count_nonzero() + lamp[2].weight.count_nonzero())
    assert total - nonzero == round(0.75 * total)


def test_the_masks_do_not_depend_on_a_layers_weight_scale() -> None:
    spec = pk.Unstructured(sparsity=0.7, scope="global", importance="lamp")
    masks = [pk.prune(two_layers(small), spec).plan.masks for small in (1.0, 1e-3)]
    assert masks[0].keys() == masks[1].keys()
    assert all(torch.equal(masks[0][key], masks[1][key]) for key in masks[0])


@pytest.mark.parametrize("make", [
    lambda: pk.Unstructured(sparsity=0.9, importance="lamp"),
    lambda: pk.Unstructured(sparsity=0.9, scope="layer", importance="lamp"),
    lambda: pk.Unstructured(threshold=0.1, importance="lamp"),
    lambda: pk.NM(2, 4, importance="lamp"),
])
def test_lamp_outside_a_global_ranking_is_refused(make) -> None:
    with pytest.raises(pk.SpecError, match="importance='lamp' needs scope='global'"):
        make()


def test_lamp_with_an_allocation_is_refused() -> None:
    with pytest.raises(pk.SpecError, match="needs a calibrated importance"):
        pk.Unstructured(sparsity=0.9, scope="global", importance="lamp", allocation="global")


def test_a_lamp_spec_round_trips_through_its_dict() -> None:
    spec = pk.Unstructured(sparsity=0.95, scope="global", importance="lamp")
    assert spec_from_dict(spec.to_dict()) == spec
