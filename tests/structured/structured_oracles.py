"""Shared checks for structured pruning tests (zoo and torchvision)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import prunekit as pk
from prunekit.graph.groups import analyze
from prunekit.inputs import call_model, flat_tensors
from prunekit.measure.counting import count_macs, count_params
from prunekit.structured import remove_channels

WIDTHS = {"in_channels", "out_channels", "in_features", "out_features", "num_features",
          "embedding_dim", "num_channels", "num_parameters"}


def outputs(model: nn.Module, x: Any) -> list[torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return flat_tensors(call_model(model, x))


def check_pruned(
    model: nn.Module,
    x: Any,
    spec: pk.Structured,
    ignore: list[str],
    reference: tuple[list[torch.Tensor], int] | None = None,
) -> nn.Module:
    """Prune and assert what a user relies on; return the pruned model.

    ``reference`` = the model's outputs and MACs, when the caller has them already.
    """
    return check_result(model, x, spec, ignore, reference).model


def check_result(
    model: nn.Module,
    x: Any,
    spec: pk.Structured,
    ignore: list[str],
    reference: tuple[list[torch.Tensor], int] | None = None,
) -> pk.PruneResult:
    """:func:`check_pruned`, returning the whole result (model and plan)."""
    before, total = reference if reference is not None else (outputs(model, x), count_macs(model, x))
    ignored = {k: v.clone() for k, v in model.state_dict().items()
               if any(k.startswith(name + ".") for name in ignore)}
    result = pk.prune(model, spec, x, ignore=ignore)
    pruned = result.model
    after = outputs(pruned, x)
    assert [t.shape for t in after] == [t.shape for t in before]
    assert all(bool(torch.isfinite(t).all()) for t in after)
    assert count_params(pruned) < count_params(model)
    assert count_macs(pruned, x) < total
    state = pruned.state_dict()
    for key, value in ignored.items():  # ignored layers: same values
        assert torch.equal(state[key], value), key
    if spec.round_to > 1:  # every layer width that changed is a multiple of round_to
        for module, attrs in result.plan.attributes.items():
            for attr in WIDTHS.intersection(attrs):
                assert attrs[attr] % spec.round_to == 0, (module, attr, attrs[attr])
    pruned.eval()
    pruned.zero_grad()
    loss = sum(t.float().sum() for t in flat_tensors(call_model(pruned, x)))
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    grads = [p.grad for p in pruned.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)
    return result


def check_save_load(result: pk.PruneResult, build: Any, x: Any, folder: Any) -> None:
    """``pk.save`` then ``pk.load`` onto a fresh original model gives the same outputs."""
    pk.save(result, folder)
    loaded = pk.load(folder, build)
    for want, have in zip(outputs(result.model, x), outputs(loaded, x), strict=True):
        torch.testing.assert_close(have, want, atol=1e-6, rtol=1e-6)


def _as_double(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.double() if x.is_floating_point() else x
    return x


def dead_channel_equivalence(model: nn.Module, x: Any, fraction: float = 0.25) -> int:
    """Zero every weight slice of some channels, remove exactly those, compare outputs.

    Only groups whose channels are not normalised together (LayerNorm / GroupNorm) are used:
    there a zero channel still counts in the statistics. Runs in float64.

    Returns:
        The number of channels removed.
    """
    model = model.double().eval()
    x = _as_double(x)
    analysis = analyze(model, x)
    removed = torch.zeros(analysis.num_channels, dtype=torch.bool)
    for group in analysis.groups:
        free = group.channels[~analysis.frozen[group.channels]]
        if group.mixing or free.numel() < 2:
            continue
        count = max(1, int(fraction * free.numel()))
        removed[free[torch.randperm(free.numel())[:count]]] = True
    state = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for member in analysis.members:
            if member.key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                continue
            chan = member.channel
            hit = (chan >= 0) & removed[chan.clamp(min=0)]
            if bool(hit.any()):
                state[member.key].index_fill_(member.dim, hit.nonzero().flatten(), 0.0)
    reference = outputs(model, x)
    pruned = remove_channels(model, x, analysis, removed)
    got = outputs(pruned, x)
    for want, have in zip(reference, got, strict=True):
        torch.testing.assert_close(have, want, atol=1e-5, rtol=1e-5)
    if bool(removed.any()):
        assert count_params(pruned) < count_params(model)
    return int(removed.sum())
