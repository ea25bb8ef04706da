"""Channel importance: one score per channel, summed over the channel's coupled slices.

- ``l1`` / ``l2``: norm of the channel's filters in every producer layer (conv / linear
  output rows) of its group (the L1 filter norm of the classic filter-pruning recipe);
- ``bn_scale``: summed ``|gamma|`` of the channel's normalisation layers (channels with no
  norm layer fall back to ``l1``);
- ``taylor``: ``|sum(w * dL/dw)|`` over every parameter slice of the channel, with
  ``L = mean(output^2)`` over the calibration batches (or the example inputs);
- ``random``: uniform scores from ``seed``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..errors import CalibrationError
from ..graph.groups import Analysis, Member
from ..graph.state import NORM, OUT
from ..inputs import ExampleInputs, call_model, eval_mode, flat_tensors


def _slice_sums(values: torch.Tensor, member: Member) -> torch.Tensor:
    """Sum of ``values`` over every dim but the member's: one number per index."""
    dims = [d for d in range(values.dim()) if d != member.dim]
    return values.sum(dim=dims) if dims else values


def _slice_norms(weight: torch.Tensor, member: Member, p: int) -> torch.Tensor:
    """``sum |w|^p`` of every slice along the member's dim (no full-size temporaries)."""
    dims = [d for d in range(weight.dim()) if d != member.dim]
    if not dims:
        return weight.abs().pow(p)
    return torch.linalg.vector_norm(weight, ord=p, dim=dims).double().pow(p)


def _accumulate(scores: torch.Tensor, member: Member, per_index: torch.Tensor) -> None:
    valid = member.channel >= 0
    scores.index_add_(0, member.channel[valid], per_index[valid].double())


def magnitude_scores(analysis: Analysis, tensors: dict[str, torch.Tensor], p: int) -> torch.Tensor:
    """L1 (``p=1``) or L2 (``p=2``) norm of each channel's producer filters."""
    scores = torch.zeros(analysis.num_channels, dtype=torch.float64)
    for member in analysis.members:
        if member.role == OUT:
            _accumulate(scores, member, _slice_norms(tensors[member.key].detach(), member, p))
    return scores.sqrt() if p == 2 else scores


def bn_scale_scores(analysis: Analysis, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed ``|gamma|`` of each channel's norm layers; l1 where a channel has none."""
    scores = torch.zeros(analysis.num_channels, dtype=torch.float64)
    has_norm = torch.zeros(analysis.num_channels, dtype=torch.bool)
    for member in analysis.members:
        if member.role == NORM and member.key.endswith("weight"):
            gamma = tensors[member.key].detach().double().abs()
            _accumulate(scores, member, gamma)
            has_norm[member.channel[member.channel >= 0]] = True
    fallback = magnitude_scores(analysis, tensors, 1)
    return torch.where(has_norm, scores, fallback)


def taylor_gradients(
    model: nn.Module, batches: Iterable[ExampleInputs]
) -> dict[str, torch.Tensor]:
    """Gradients of ``mean(output^2)`` summed over ``batches``; the model's ``.grad`` are kept.

    Raises:
        CalibrationError: no batch was given, or a batch does not run.
    """
    params = dict(model.named_parameters())
    saved = {name: p.grad for name, p in params.items()}
    for p in params.values():
        p.grad = None
    count = 0
    try:
        with torch.enable_grad(), eval_mode(model):
            for batch in batches:
                outputs = flat_tensors(call_model(model, batch))
                outputs = [t for t in outputs if t.is_floating_point()]
                loss = sum(t.float().pow(2).mean() for t in outputs)
                if isinstance(loss, torch.Tensor):
                    loss.backward()
                count += 1
        grads = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}
    except Exception as exc:  # noqa: BLE001 - user batches may fail in any way
        raise CalibrationError(
            f"taylor importance could not run a calibration batch: {type(exc).__name__}: {exc}",
            "pass calibration= as an iterable of inputs the model accepts",
        ) from exc
    finally:
        for name, p in params.items():
            p.grad = saved[name]
    if count == 0:
        raise CalibrationError("taylor importance got no calibration batch",
                               "pass calibration=[batch, ...] or example_inputs")
    return grads


def taylor_scores(
    analysis: Analysis, tensors: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``|sum(w * g)|`` over each parameter slice, summed over the channel's slices."""
    scores = torch.zeros(analysis.num_channels, dtype=torch.float64)
    for member in analysis.members:
        grad = grads.get(member.key)
        if grad is None:
            continue
        product = tensors[member.key].detach().double() * grad.double()
        _accumulate(scores, member, _slice_sums(product, member).abs())
    return scores


def random_scores(analysis: Analysis, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(analysis.num_channels, generator=gen, dtype=torch.float64)


def channel_scores(
    kind: str,
    analysis: Analysis,
    model: nn.Module,
    *,
    batches: Iterable[ExampleInputs] = (),
    seed: int = 0,
) -> torch.Tensor:
    """Importance of every channel of ``analysis`` (higher = keep).

    Args:
        kind: ``"l1"``, ``"l2"``, ``"bn_scale"``, ``"taylor"`` or ``"random"``.
        analysis: the model's channels (:func:`prunekit.graph.groups.analyze`).
        model: the analysed model (its parameters are read, never changed).
        batches: inputs for ``taylor``.
        seed: seed for ``random``.

    Returns:
        ``(num_channels,)`` float64 scores.
    """
    tensors = dict(model.state_dict(keep_vars=True))
    if kind == "l1":
        return magnitude_scores(analysis, tensors, 1)
    if kind == "l2":
        return magnitude_scores(analysis, tensors, 2)
    if kind == "bn_scale":
        return bn_scale_scores(analysis, tensors)
    if kind == "taylor":
        return taylor_scores(analysis, tensors, taylor_gradients(model, batches))
    if kind == "random":
        return random_scores(analysis, seed)
    raise ValueError(f"unknown channel importance {kind!r}")
