"""One small handler per layer type: set the module's size attributes from its new tensors.

Called after the tensors of a module were sliced; each handler reads the module's old
attributes (still unchanged) and the new tensor shapes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def linear(m: nn.Linear) -> None:
    m.out_features, m.in_features = int(m.weight.shape[0]), int(m.weight.shape[1])


def conv(m: nn.modules.conv._ConvNd) -> None:
    """Conv / ConvTranspose; depthwise-style convs (one input per group) lose whole groups."""
    w = m.weight
    if m.transposed:
        m.in_channels, m.out_channels = int(w.shape[0]), int(w.shape[1]) * m.groups
        return
    per_group_in = m.in_channels // m.groups
    if m.groups > 1 and per_group_in == 1:
        out_per_group = m.out_channels // m.groups
        m.groups = int(w.shape[0]) // out_per_group
    m.out_channels = int(w.shape[0])
    m.in_channels = int(w.shape[1]) * m.groups


def batch_norm(m: nn.modules.batchnorm._NormBase) -> None:
    source = m.weight if m.weight is not None else m.running_mean
    if source is not None:
        m.num_features = int(source.shape[0])


def layer_norm(m: nn.LayerNorm) -> None:
    if m.weight is not None:
        m.normalized_shape = (int(m.weight.shape[0]),)


def group_norm(m: nn.GroupNorm) -> None:
    if m.weight is not None:
        m.num_channels = int(m.weight.shape[0])


def embedding(m: nn.Embedding) -> None:
    m.embedding_dim = int(m.weight.shape[1])


def prelu(m: nn.PReLU) -> None:
    m.num_parameters = int(m.weight.shape[0])


def rms_norm(m: nn.Module) -> None:
    weight = getattr(m, "weight", None)
    if weight is not None:
        m.normalized_shape = (int(weight.shape[0]),)  # type: ignore[assignment]


HANDLERS: list[tuple[type[nn.Module], Callable[..., None]]] = [
    (nn.Linear, linear),
    (nn.modules.conv._ConvNd, conv),
    (nn.modules.batchnorm._NormBase, batch_norm),  # BatchNorm*, InstanceNorm*
    (nn.LayerNorm, layer_norm),
    (nn.GroupNorm, group_norm),
    (nn.Embedding, embedding),
    (nn.PReLU, prelu),
]
if hasattr(nn, "RMSNorm"):
    HANDLERS.append((nn.RMSNorm, rms_norm))


def sync_attributes(module: nn.Module) -> None:
    """Run the handler of ``module``'s type (no-op for types without size attributes)."""
    for kind, handler in HANDLERS:
        if isinstance(module, kind):
            handler(module)
            return
