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

from ..distributed import active, check_same_on_every_rank, digest_tensors
from ..errors import CalibrationError, PlanError
from ..graph.groups import Analysis, Member
from ..graph.state import NORM, OUT
from ..inputs import ExampleInputs, call_model, flat_tensors
from .gradients import summed_gradients

SCORES_AGREE = {"scores": (PlanError, "the channel importances",
                           "build or load the same model on every rank and pass every rank the "
                           "same calibration batches")}


def _slice_sums(values: torch.Tensor, member: Member) -> torch.Tensor:
    """Sum of ``values`` over every dim but the member's: one number per index."""
    dims = [d for d in range(values.dim()) if d != member.dim]
    return values.sum(dim=dims) if dims else values


def _slice_norms(weight: torch.Tensor, member: Member, p: int) -> torch.Tensor:
    """``sum |w|^p`` of every slice along the member's dim, as float64 (no full-size
    temporaries). A bf16 / fp16 weight is reduced in float32: its norms rounded to its own
    dtype would tie and reorder channels that differ by less than 1 part in 2^8."""
    dims = [d for d in range(weight.dim()) if d != member.dim]
    if not dims:
        return weight.double().abs().pow(p)
    precise = torch.promote_types(weight.dtype, torch.float32)
    return torch.linalg.vector_norm(weight, ord=p, dim=dims, dtype=precise).double().pow(p)


def _accumulate(scores: torch.Tensor, member: Member, per_index: torch.Tensor) -> None:
    """``scores[channel] += per_index`` for the member's indices that belong to a channel.

    Indices outside every channel (``channel < 0``) add an exact 0.0 to channel 0, so no
    value decides a shape (the update runs on any device, and without host syncs).
    """
    channel = member.channel.to(scores.device)
    valid = channel >= 0
    values = per_index.to(device=scores.device, dtype=scores.dtype).masked_fill(~valid, 0.0)
    scores.index_add_(0, channel.clamp(min=0), values)


def _device(tensors: dict[str, torch.Tensor], analysis: Analysis) -> torch.device:
    """Where the analysed tensors live (the scores are accumulated there)."""
    for member in analysis.members:
        if member.key in tensors:
            return tensors[member.key].device
    return torch.device("cpu")


def magnitude_scores(analysis: Analysis, tensors: dict[str, torch.Tensor], p: int) -> torch.Tensor:
    """L1 (``p=1``) or L2 (``p=2``) norm of each channel's producer filters.

    Returns:
        ``(num_channels,)`` float64 scores on the tensors' device.
    """
    scores = torch.zeros(analysis.num_channels, dtype=torch.float64,
                         device=_device(tensors, analysis))
    for member in analysis.members:
        if member.role == OUT:
            _accumulate(scores, member, _slice_norms(tensors[member.key].detach(), member, p))
    return scores.sqrt() if p == 2 else scores


def bn_scale_scores(analysis: Analysis, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed ``|gamma|`` of each channel's norm layers; l1 where a channel has none.

    Returns:
        ``(num_channels,)`` float64 scores on the tensors' device.
    """
    device = _device(tensors, analysis)
    scores = torch.zeros(analysis.num_channels, dtype=torch.float64, device=device)
    norms = torch.zeros(analysis.num_channels, dtype=torch.float64, device=device)
    for member in analysis.members:
        if member.role == NORM and member.key.endswith("weight"):
            gamma = tensors[member.key].detach().double().abs()
            _accumulate(scores, member, gamma)
            _accumulate(norms, member, torch.ones_like(gamma))
    fallback = magnitude_scores(analysis, tensors, 1)
    return torch.where(norms > 0, scores, fallback)


def output_energy_gradients(
    model: nn.Module, batches: Iterable[ExampleInputs]
) -> dict[str, torch.Tensor]:
    """Gradients of ``L = mean(output^2)`` (summed over the model's floating outputs), summed
    over ``batches``, for every parameter: the data of the ``taylor`` channel score.

    The loss is computed in float32 whatever the model's dtype; the sums are float64 on
    each parameter's device (see :func:`.gradients.summed_gradients`). The parameters'
    ``.grad`` and ``requires_grad`` are left as they were.

    Args:
        model: the model (run in eval mode).
        batches: inputs the model accepts.

    Returns:
        ``{parameter name: summed gradient}``.

    Raises:
        CalibrationError: no batch was given, or a batch does not run.
    """

    def energy(module: nn.Module, batch: ExampleInputs, _: int) -> torch.Tensor | None:
        outputs = [t for t in flat_tensors(call_model(module, batch)) if t.is_floating_point()]
        if not outputs:
            return None
        loss = outputs[0].float().pow(2).mean()
        for t in outputs[1:]:
            loss = loss + t.float().pow(2).mean()
        return loss

    try:
        grads, count = summed_gradients(model, dict(model.named_parameters()), batches, energy)
    except Exception as exc:  # noqa: BLE001 - user batches may fail in any way
        raise CalibrationError(
            f"taylor importance could not run a calibration batch: {type(exc).__name__}: {exc}",
            "pass calibration= as an iterable of inputs the model accepts",
        ) from exc
    if count == 0:
        raise CalibrationError("taylor importance got no calibration batch",
                               "pass calibration=[batch, ...] or example_inputs")
    return grads


def taylor_scores(
    analysis: Analysis, tensors: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``|sum(w * g)|`` over each parameter slice, summed over the channel's slices.

    Returns:
        ``(num_channels,)`` float64 scores on the tensors' device.
    """
    scores = torch.zeros(analysis.num_channels, dtype=torch.float64,
                         device=_device(tensors, analysis))
    for member in analysis.members:
        grad = grads.get(member.key)
        if grad is None:
            continue
        product = tensors[member.key].detach().double() * grad.double()
        _accumulate(scores, member, _slice_sums(product, member).abs())
    return scores


def random_scores(analysis: Analysis, seed: int) -> torch.Tensor:
    """Uniform float64 scores from ``seed`` (a CPU generator: the same on every device)."""
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
        ``(num_channels,)`` float64 scores on the CPU (where selection runs), accumulated in
        float64 on the model's device whatever its dtype.
    """
    tensors = dict(model.state_dict(keep_vars=True))
    if kind == "l1":
        scores = magnitude_scores(analysis, tensors, 1)
    elif kind == "l2":
        scores = magnitude_scores(analysis, tensors, 2)
    elif kind == "bn_scale":
        scores = bn_scale_scores(analysis, tensors)
    elif kind == "taylor":
        scores = taylor_scores(analysis, tensors, output_energy_gradients(model, batches))
    elif kind == "random":
        scores = random_scores(analysis, seed)
    else:
        raise ValueError(f"unknown channel importance {kind!r}")
    if active():  # a data-parallel job: every rank must select the same channels
        check_same_on_every_rank({"scores": digest_tensors({kind: scores})}, SCORES_AGREE)
    return scores.cpu()
