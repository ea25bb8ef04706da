"""Pure channel selection: exact counts, round_to, min_channels, frozen channels, scopes."""

from __future__ import annotations

import torch

from prunekit.select.structured import GroupChoice, select_channels, select_global, select_layer


def group(ids: list[int], frozen: tuple[int, ...] = (), unit: int = 1) -> GroupChoice:
    channels = torch.tensor(ids)
    return GroupChoice(channels, torch.tensor([i in frozen for i in ids]), unit)


def test_layer_scope_removes_floor_of_sparsity_lowest() -> None:
    scores = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 0.5, 9.0])
    removed = select_layer([group([0, 1, 2, 3, 4]), group([5, 6])], scores, 0.5)
    assert removed.nonzero().flatten().tolist() == [1, 3, 5]  # floor(2.5)=2 and floor(1)=1


def test_round_to_rounds_kept_width_up() -> None:
    scores = torch.arange(20.0)
    removed = select_layer([group(list(range(20)))], scores, 0.5, round_to=8)
    assert int((~removed).sum()) == 16  # 10 kept -> 16
    removed = select_layer([group(list(range(20)))], scores, 0.3, round_to=8)
    assert int((~removed).sum()) == 16  # 14 kept -> 16


def test_round_to_counts_head_width() -> None:
    scores = torch.arange(6.0)
    removed = select_layer([group(list(range(6)), unit=4)], scores, 0.5, round_to=8)
    assert int((~removed).sum()) == 4  # 3 heads of 4 -> 4 heads (16 wide, a multiple of 8)


def test_frozen_channels_are_kept_and_count_toward_the_width() -> None:
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0])
    removed = select_layer([group([0, 1, 2, 3], frozen=[0])], scores, 0.5)
    assert removed.tolist() == [False, True, True, False]


def test_min_channels() -> None:
    scores = torch.arange(10.0)
    removed = select_layer([group(list(range(10)))], scores, 0.9, min_channels=4)
    assert int((~removed).sum()) == 4


def test_threshold() -> None:
    scores = torch.tensor([0.65, 0.85, 0.036, 0.73])
    removed = select_channels([group([0, 1, 2, 3])], scores, sparsity=None, threshold=0.1,
                              scope="layer", round_to=1, min_channels=1)
    assert removed.tolist() == [False, False, True, False]


def test_global_ranks_relative_to_group_mean() -> None:
    # group A scores are 100x group B's; relative ranking still prunes both groups
    scores = torch.tensor([100.0, 200.0, 300.0, 400.0, 1.0, 2.0, 3.0, 4.0])
    removed = select_global([group([0, 1, 2, 3]), group([4, 5, 6, 7])], scores, 0.5)
    assert int(removed.sum()) == 4
    assert removed.tolist() == [True, True, False, False, True, True, False, False]


def test_sparsity_zero_removes_nothing() -> None:
    scores = torch.rand(12)
    for scope in ("layer", "global"):
        removed = select_channels([group(list(range(12)))], scores, sparsity=0.0, threshold=None,
                                  scope=scope, round_to=1, min_channels=1)
        assert not bool(removed.any())


def test_selection_is_pure() -> None:
    scores = torch.tensor([3.0, 1.0, 2.0])
    g = group([0, 1, 2])
    first = select_layer([g], scores, 0.5)
    assert torch.equal(select_layer([g], scores, 0.5), first)
    assert scores.tolist() == [3.0, 1.0, 2.0]


def test_kept_widths_are_what_ratio_pruning_can_produce() -> None:
    from prunekit.select.structured import kept_widths, layer_width

    g = group(list(range(20)), frozen=(0, 1, 2, 3, 4))
    widths = kept_widths(g, round_to=4, min_channels=2)
    assert widths == [20, 16, 12, 8]  # 5 frozen: at least 8 (a multiple of 4)
    for sparsity in (0.0, 0.3, 0.5, 0.9):
        assert layer_width(g, sparsity, round_to=4, min_channels=2) in widths
    heads = kept_widths(group(list(range(6)), unit=4), round_to=8)
    assert heads == [6, 4, 2]  # heads of 4: multiples of 2 heads are multiples of 8 wide


def test_removal_order_is_the_order_layer_scope_removes_in() -> None:
    from prunekit.select.structured import removal_order

    scores = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0])
    g = group([0, 1, 2, 3, 4], frozen=(1,))
    order = removal_order(g, scores)
    assert order.tolist() == [3, 4, 2, 0]  # lowest first, frozen channel 1 never
    for n in range(1, 4):
        removed = select_layer([g], scores, n / 5)
        assert set(removed.nonzero().flatten().tolist()) == set(order[:n].tolist())
