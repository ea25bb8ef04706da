"""Does a module's forward compute ``input + f(input)``? Read from its torch.fx graph.

The graph's output is followed back through ops that keep a tensor as it is or act on it
element-wise with no weight (activations, dropout, ``nn.Identity``) to an addition. One
operand of that addition must be the input itself (through the same ops) or another such
addition (pre-norm transformer blocks add twice), the other must be computed from the input.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

TRANSPARENT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish,
    nn.ELU, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
)
TRANSPARENT_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.silu, F.gelu, F.hardswish, F.mish, F.elu,
    F.dropout, F.dropout2d,
})
TRANSPARENT_METHODS = frozenset({"relu", "relu_", "contiguous", "clone"})
ADD_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({operator.add, operator.iadd, torch.add})
ADD_METHODS = frozenset({"add", "add_"})


def _is_transparent(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if not node.args or not isinstance(node.args[0], fx.Node):
        return False
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), TRANSPARENT_MODULES)
    if node.op == "call_function":
        return node.target in TRANSPARENT_FUNCTIONS
    return node.op == "call_method" and node.target in TRANSPARENT_METHODS


def _through(node: Any, modules: dict[str, nn.Module]) -> Any:
    """``node`` with transparent ops stripped off its end."""
    while isinstance(node, fx.Node) and _is_transparent(node, modules):
        node = node.args[0]
    return node


def _is_add(node: Any) -> bool:
    if not isinstance(node, fx.Node) or len(node.args) < 2 or node.kwargs.get("alpha", 1) != 1:
        return False
    if node.op == "call_function":
        return node.target in ADD_FUNCTIONS
    return node.op == "call_method" and node.target in ADD_METHODS


def _depends_on(node: Any, source: fx.Node) -> bool:
    seen: set[fx.Node] = set()
    stack = [node] if isinstance(node, fx.Node) else []
    while stack:
        current = stack.pop()
        if current is source:
            return True
        if current not in seen:
            seen.add(current)
            stack.extend(current.all_input_nodes)
    return False


def _residual_sum(node: Any, source: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """True if ``node`` (transparent ops stripped) adds ``source`` to a branch computed
    from it, directly or through another such sum."""
    node = _through(node, modules)
    if not _is_add(node):
        return False
    first, second = node.args[0], node.args[1]
    for skip, branch in ((first, second), (second, first)):
        skip = _through(skip, modules)
        if _through(branch, modules) is source or not _depends_on(branch, source):
            continue
        if skip is source or _residual_sum(skip, source, modules):
            return True
    return False


def residual_reason(module: nn.Module) -> str | None:
    """Why ``module`` is not ``input + f(input)``, or None when it is.

    Example:
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = nn.Conv2d(4, 4, 3, padding=1)
        ...     def forward(self, x):
        ...         return torch.relu(x + self.conv(x))
        >>> residual_reason(Block()) is None
        True
        >>> residual_reason(nn.Conv2d(4, 4, 3))
        'its output is not its input plus a branch computed from it'
    """
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception as exc:  # noqa: BLE001 - any trace failure means: cannot tell
        return f"its forward cannot be traced to find the residual addition ({type(exc).__name__})"
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    outputs = [n for n in graph.nodes if n.op == "output"]
    modules = dict(module.named_modules())
    if not inputs or len(outputs) != 1 or not _residual_sum(outputs[0].args[0], inputs[0],
                                                               modules):
        return "its output is not its input plus a branch computed from it"
    return None
