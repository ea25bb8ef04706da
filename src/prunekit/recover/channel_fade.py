"""Gradual structured pruning: fade the doomed channels out during fine-tuning, then cut.

One-shot structured pruning removes half of every layer's channels at once and leaves the
network near chance; a short fine-tuning then has to rebuild it. :class:`ChannelFade`
instead multiplies the channels a structured plan removes by a factor that falls from 1 to
0 on a cubic schedule (``(1 - t)**3`` up to ``end_fraction`` of the steps), applied to the
output of their BatchNorm layers, so the network shifts its work onto the kept channels while
it trains. From then on the faded channels contribute exactly zero, and
:func:`transplant` copies the trained kept slices into the physically pruned model, which
computes the same function.

Assumes every removed channel leaves its producer through a BatchNorm layer (conv-BN
networks such as ResNets); :func:`faded_channels` checks this.

Example:
    >>> one_shot = pk.prune(dense, pk.Structured(sparsity=0.5), example)  # the architecture
    >>> model = copy.deepcopy(dense)
    >>> fade = ChannelFade(faded_channels(model, one_shot.plan), end_fraction=0.5)
    >>> finetune(model, loader, RecoveryConfig(epochs=1), pruner=fade)
    >>> fade.remove(model)
    >>> pruned = transplant(model, one_shot)   # the smaller model, trained
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..apply.surgery.slicing import sliced_tensors
from ..distributed import unwrap
from ..errors import PlanError, SpecError
from ..measure.placement import model_device
from ..plan import Plan
from ..result import PruneResult


def _norms(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {n: m for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def faded_channels(model: nn.Module, plan: Plan) -> dict[str, torch.Tensor]:
    """The channels ``plan`` removes from each BatchNorm of ``model`` (the dense one).

    Returns:
        ``{norm module name: removed channel indices}`` (norms that lose nothing omitted).

    Raises:
        PlanError: a conv/linear loses output channels that no BatchNorm of the plan loses
            (fading through norm layers would not silence them).
    """
    removed: dict[str, torch.Tensor] = {}
    kept_sets = set()
    for name, norm in _norms(model).items():
        kept = plan.kept.get(f"{name}.weight" if name else "weight", {}).get(0)
        if kept is None or len(kept) == norm.num_features:
            continue
        keep = torch.zeros(norm.num_features, dtype=torch.bool)
        keep[torch.as_tensor(kept, dtype=torch.long)] = True
        removed[name] = (~keep).nonzero().flatten()
        kept_sets.add(tuple(kept))
    unmatched = [
        name for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
        and (kept := plan.kept.get(f"{name}.weight", {}).get(0)) is not None
        and len(kept) < module.weight.shape[0] and tuple(kept) not in kept_sets
    ]
    if unmatched:
        raise PlanError(f"channels cut from {', '.join(unmatched)} pass through no BatchNorm "
                        "that loses them; they cannot be faded out",
                        "prune these layers one-shot")
    return removed


class ChannelFade:
    """Scales the removed channels of BatchNorm outputs by ``(1 - t)**3``, then by 0.

    Used like a :class:`~prunekit.recover.GradualPruner` (``finetune(..., pruner=fade)``):
    ``start`` installs the hooks, each call before a step updates the factor. Call
    :meth:`remove` after training to take the hooks off.

    Args:
        channels: ``{norm module name: removed channel indices}`` (:func:`faded_channels`).
        end_fraction: fraction of the steps after which the channels are fully off.
    """

    def __init__(self, channels: dict[str, torch.Tensor], end_fraction: float = 0.5) -> None:
        if not 0 < end_fraction <= 1:
            raise SpecError(f"end_fraction={end_fraction} (must be in (0, 1])")
        self.channels = channels
        self.end_fraction = end_fraction
        self.factor = 1.0
        self._handles: list[RemovableHandle] = []
        self._scales: dict[str, torch.Tensor] = {}

    def factor_at(self, step: int, total: int) -> float:
        """The scale of the faded channels before ``step`` of ``total``."""
        end = max(1.0, self.end_fraction * total)
        return max(0.0, 1.0 - step / end) ** 3

    def start(self, model: nn.Module, total: int) -> None:
        """Install the scaling hooks (factor 1: the model is unchanged)."""
        self.remove(model)
        for name in self.channels:
            module = model.get_submodule(name)
            assert isinstance(module, nn.modules.batchnorm._BatchNorm)
            scale = torch.ones(module.num_features, device=model_device(module))
            self._scales[name] = scale
            self._handles.append(module.register_forward_hook(_scaler(scale)))
        self._set(1.0)

    def __call__(self, model: nn.Module, step: int, total: int) -> bool:
        """Update the factor for ``step``; returns whether it changed."""
        if not self._handles:
            self.start(model, total)
        factor = self.factor_at(step, total)
        if factor == self.factor:
            return False
        self._set(factor)
        return True

    def _set(self, factor: float) -> None:
        self.factor = factor
        for name, indices in self.channels.items():
            self._scales[name][indices] = factor

    def remove(self, model: nn.Module) -> None:
        """Take the hooks off (the model computes with every channel again)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._scales.clear()


def _scaler(scale: torch.Tensor) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor]:
    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        shape = [1, -1] + [1] * (output.dim() - 2)
        return output * scale.view(shape).to(device=output.device, dtype=output.dtype)
    return hook


def transplant(trained: nn.Module, pruned: PruneResult) -> nn.Module:
    """Copy ``trained``'s kept slices into ``pruned.model`` (same architecture, cut by
    ``pruned.plan``) and return it. ``trained`` may be a DDP wrapper (its module is read).

    Raises:
        PlanError: the two models' tensors do not correspond.
    """
    trained = unwrap(trained)
    source = trained.state_dict()
    sliced = sliced_tensors(trained, pruned.plan.kept)
    state = {}
    for key, target in pruned.model.state_dict().items():
        if key not in source:
            raise PlanError(f"{key}: not in the trained model")
        value = sliced.get(key, source[key])
        if tuple(value.shape) != tuple(target.shape):
            raise PlanError(f"{key}: {tuple(value.shape)} after slicing, the pruned model "
                            f"has {tuple(target.shape)}")
        state[key] = value
    pruned.model.load_state_dict(state)
    return pruned.model
