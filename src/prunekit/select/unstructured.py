"""Unstructured selection with exact counts (pure functions).

Masks are boolean, True = kept. Scores of ``-inf`` mark weights that must go first
(already pruned), which makes iterative pruning only ever remove more.
"""

from __future__ import annotations

import torch

from ..errors import SpecError


def removal_count(numel: int, sparsity: float) -> int:
    """How many of ``numel`` weights a sparsity removes (round half to even, exact)."""
    return int(round(sparsity * numel))


def lowest_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask that removes exactly the ``k`` lowest scores (ties broken by position)."""
    flat = scores.reshape(-1)
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if k <= 0:
        return keep.reshape(scores.shape)
    if k >= flat.numel():
        return torch.zeros_like(keep).reshape(scores.shape)
    kth = flat.kthvalue(k).values  # O(n) select, much cheaper than a full sort
    below = flat < kth
    keep[below] = False
    n_ties_to_remove = k - int(below.sum())
    tie_positions = torch.nonzero(flat == kth).squeeze(1)[:n_ties_to_remove]
    keep[tie_positions] = False
    return keep.reshape(scores.shape)


def layer_masks(
    scores: dict[str, torch.Tensor], sparsity: dict[str, float]
) -> dict[str, torch.Tensor]:
    """Remove ``sparsity[name]`` of each tensor's weights, ranked within the tensor."""
    return {
        name: lowest_k_mask(s, removal_count(s.numel(), sparsity[name]))
        for name, s in scores.items()
    }


def global_masks(scores: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Remove ``sparsity`` of all weights together, ranked across every tensor."""
    names = list(scores)
    flat = torch.cat([scores[n].reshape(-1) for n in names])  # (total,)
    keep = lowest_k_mask(flat, removal_count(flat.numel(), sparsity))
    masks, start = {}, 0
    for name in names:
        numel = scores[name].numel()
        masks[name] = keep[start : start + numel].reshape(scores[name].shape)
        start += numel
    return masks


def threshold_masks(scores: dict[str, torch.Tensor], threshold: float) -> dict[str, torch.Tensor]:
    """Remove every weight whose score is strictly below ``threshold``.

    Example (MISSION.md): with ``|w|`` scores and threshold 0.05, 0.03 is removed and
    0.05 itself is kept.
    """
    return {name: s >= threshold for name, s in scores.items()}


def check_not_reviving(
    already_removed: dict[str, int], masks: dict[str, torch.Tensor]
) -> None:
    """Masks only grow: a new plan must remove at least what is already removed."""
    short = [
        f"{name} ({int((~masks[name]).sum())} < {n} already removed)"
        for name, n in already_removed.items()
        if int((~masks[name]).sum()) < n
    ]
    if short:
        raise SpecError(
            "the requested sparsity is below what is already pruned in: " + ", ".join(short),
            "iterative pruning only removes more; ask for a higher sparsity or start "
            "from the dense model",
        )
