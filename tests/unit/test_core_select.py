"""Pure selection: exact counts, ties, thresholds and N:M group validity."""

from __future__ import annotations

import pytest
import torch

import prunekit as pk
from prunekit.errors import ShapeError, SpecError
from prunekit.select.nm import is_nm, nm_mask
from prunekit.select.unstructured import (
    check_not_reviving,
    global_masks,
    kth_smallest,
    kth_smallest_of,
    layer_masks,
    lowest_k_mask,
    removal_count,
    threshold_masks,
)


def removed(mask: torch.Tensor) -> int:
    return int((~mask).sum())


@pytest.mark.parametrize("numel", [1, 7, 100, 1001])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_layer_masks_remove_exactly_round_s_times_numel(numel: int, sparsity: float) -> None:
    scores = torch.rand(numel)
    mask = layer_masks({"w": scores}, {"w": sparsity})["w"]
    assert removed(mask) == round(sparsity * numel)
    if 0 < removed(mask) < numel:  # every removed score is <= every kept score
        assert scores[~mask].max() <= scores[mask].min()


def test_global_masks_remove_exactly_round_s_times_total_ranked_together() -> None:
    scores = {"small": torch.rand(10, 30) * 0.1, "big": torch.rand(50, 7) + 2.0, "mid": torch.rand(33) + 0.5}
    masks = global_masks(scores, 0.4)
    total = 10 * 30 + 50 * 7 + 33
    assert sum(removed(m) for m in masks.values()) == round(0.4 * total)
    # ranked across tensors: the low-scored tensor goes first, the high-scored one is untouched
    assert removed(masks["small"]) == 273 and removed(masks["big"]) == removed(masks["mid"]) == 0
    kept_min = min(s[m].min() for s, m in zip(scores.values(), masks.values(), strict=True) if m.any())
    removed_max = max(s[~m].max() for s, m in zip(scores.values(), masks.values(), strict=True) if (~m).any())
    assert removed_max <= kept_min


def test_global_and_layer_differ_in_per_layer_counts_but_not_in_total() -> None:
    scores = {"a": torch.rand(100), "b": torch.rand(300) * 2}
    layer = layer_masks(scores, {"a": 0.5, "b": 0.5})
    glob = global_masks(scores, 0.5)
    assert [removed(m) for m in layer.values()] == [50, 150]
    assert sum(removed(m) for m in glob.values()) == 200
    assert removed(glob["a"]) > 50  # the low-scored layer loses more under global ranking


def test_ties_are_broken_by_position_and_counts_stay_exact() -> None:
    scores = torch.tensor([1.0, 1.0, 1.0, 1.0, 2.0])
    assert lowest_k_mask(scores, 2).tolist() == [False, False, True, True, True]
    masks = global_masks({"a": torch.ones(3), "b": torch.ones(3)}, 0.5)
    assert masks["a"].tolist() == [False, False, False] and masks["b"].tolist() == [True] * 3


def test_all_equal_scores_across_many_tensors_keep_exact_global_count() -> None:
    scores = {f"t{i}": torch.zeros(17) for i in range(5)}
    masks = global_masks(scores, 0.3)
    assert sum(removed(m) for m in masks.values()) == round(0.3 * 85)


def test_minus_inf_scores_go_first() -> None:
    scores = torch.tensor([5.0, -float("inf"), 1.0, -float("inf")])
    assert lowest_k_mask(scores, 3).tolist() == [True, False, False, False]


def test_kth_smallest_matches_sorting_and_can_work_in_place() -> None:
    values = torch.randn(10_001)
    expected = values.sort().values
    for k in (1, 17, 5000, 10_001):
        assert kth_smallest(values, k) == float(expected[k - 1])
    scratch = values.clone()
    assert kth_smallest(scratch, 42, scratch=True) == float(expected[41])


def test_removal_count_is_round_of_sparsity_times_numel() -> None:
    assert [removal_count(10, s) for s in (0.0, 0.14, 0.15, 0.5, 0.96)] == [0, 1, 2, 5, 10]


def test_threshold_removes_strictly_below_and_keeps_equal() -> None:
    scores = torch.tensor([0.01, 0.05, 0.03, 0.5])
    assert threshold_masks({"w": scores}, 0.05)["w"].tolist() == [False, True, False, True]


def test_check_not_reviving_names_the_layer() -> None:
    with pytest.raises(SpecError, match=r"fc.weight \(2 < 5 already removed\)"):
        check_not_reviving({"fc.weight": 5}, {"fc.weight": torch.tensor([False, False, True])})


# --- N:M --------------------------------------------------------------------------------------

NM_CASES = [
    ("linear", (6, 16), 1),  # (out, in): groups along in
    ("conv2d", (8, 16, 3, 3), 1),  # (out, in, kh, kw): groups along input channels
    ("conv1d", (4, 8, 5), 1),
    ("conv_transpose2d", (24, 6, 2, 2), 0),  # (in, out, kh, kw): input channels are dim 0
]


@pytest.mark.parametrize(("kind", "shape", "input_dim"), NM_CASES)
@pytest.mark.parametrize(("n_keep", "m"), [(2, 4), (1, 4), (4, 8), (1, 2)])
def test_every_nm_group_keeps_exactly_n_largest(kind, shape, input_dim, n_keep, m) -> None:
    scores = torch.rand(shape)
    mask = nm_mask(scores, n_keep, m, input_dim)
    assert mask.shape == scores.shape and is_nm(mask, n_keep, m, input_dim)
    groups = mask.movedim(input_dim, -1).reshape(-1, m)  # (n_groups, m)
    s_groups = scores.movedim(input_dim, -1).reshape(-1, m)
    assert (groups.sum(dim=1) == n_keep).all()  # exactly n_keep in every group
    kept_min = s_groups.masked_fill(~groups, float("inf")).min(dim=1).values
    removed_max = s_groups.masked_fill(groups, -float("inf")).max(dim=1).values
    assert (removed_max <= kept_min).all()  # the n_keep largest of each group


def test_nm_groups_run_along_the_input_axis_not_the_output_axis() -> None:
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])  # (out=2, in=4)
    assert nm_mask(scores, 2, 4).tolist() == [[True, True, False, False], [False, False, True, True]]


def test_nm_mask_refuses_an_input_width_m_does_not_divide() -> None:
    with pytest.raises(ShapeError, match="input dimension 6 is not divisible by m=4"):
        nm_mask(torch.rand(3, 6), 2, 4)


def test_is_nm_detects_an_invalid_group() -> None:
    mask = torch.tensor([[True, True, True, False]])
    assert not is_nm(mask, 2, 4) and is_nm(mask, 3, 4)


@pytest.fixture
def sampled_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the bracketing path (used above 4M scores) on small test tensors."""
    from prunekit.select import unstructured

    monkeypatch.setattr(unstructured, "EXACT_BELOW", 0)
    monkeypatch.setattr(unstructured, "SAMPLE_SIZE", 256)


@pytest.mark.usefixtures("sampled_path")
@pytest.mark.parametrize(
    "make",
    [
        lambda: [torch.rand(1000), torch.rand(37) * 5, torch.rand(20, 20)],
        lambda: [torch.randint(0, 3, (500,)).float(), torch.zeros(300)],  # heavy ties
        lambda: [torch.cat([torch.full((800,), -float("inf")), torch.rand(200)]), torch.rand(50)],
        lambda: [torch.rand(5000)],
    ],
)
def test_bracketed_kth_value_is_exact(make) -> None:
    values = make()
    ordered = torch.cat([v.reshape(-1) for v in values]).sort().values
    for k in (1, 2, len(ordered) // 3, len(ordered) // 2, len(ordered) - 1, len(ordered)):
        assert kth_smallest_of(values, k) == float(ordered[k - 1])


@pytest.mark.usefixtures("sampled_path")
def test_bracketed_global_masks_keep_exact_counts_and_leave_scores_untouched() -> None:
    scores = {"a": torch.rand(40, 25), "b": torch.rand(333), "c": torch.ones(100)}
    copies = {k: v.clone() for k, v in scores.items()}
    for sparsity in (0.1, 0.5, 0.77, 0.99):
        masks = global_masks(scores, sparsity)
        assert sum(removed(m) for m in masks.values()) == round(sparsity * 1433)
    assert all(torch.equal(scores[k], copies[k]) for k in scores)


def test_a_sample_that_misses_falls_back_to_full_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    from prunekit.select import unstructured

    monkeypatch.setattr(unstructured, "EXACT_BELOW", 0)
    monkeypatch.setattr(unstructured, "_bracket", lambda values, k, total: (0.98, 0.99))
    values = [torch.rand(1000), torch.rand(500)]
    ordered = torch.cat(values).sort().values
    assert kth_smallest_of(values, 700) == float(ordered[699])


def test_channels_last_weights_get_exact_counts_and_masks_in_logical_order() -> None:
    model = pk.zoo.build("fmnist_resnet").to(memory_format=torch.channels_last)
    reference = pk.zoo.build("fmnist_resnet")  # same seed, contiguous weights
    spec = pk.Unstructured(sparsity=0.9, scope="global")
    masks = pk.prune(model, spec).plan.masks
    expected = pk.prune(reference, spec).plan.masks
    assert masks.keys() == expected.keys()
    assert all(torch.equal(masks[k], expected[k]) for k in masks)
