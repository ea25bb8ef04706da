"""Keep ``save_pretrained`` from writing a config that does not describe the pruned model.

A Hugging Face config has one head count and one MLP width for every layer. After pruning
different heads or neurons per layer (or heads of BERT / GPT-2, whose configs cannot give
a head count apart from the hidden size), ``save_pretrained`` would write a config that
``from_pretrained`` rejects or builds with other shapes. Such a model gets a
``save_pretrained`` that refuses, with the reason and prunekit's own format as the way out.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from ..errors import UnsupportedModelError
from .arch import Arch

logger = logging.getLogger(__name__)
FIELDS = {  # family: (layers, heads, key/value heads, MLP width)
    "bert": ("num_hidden_layers", "num_attention_heads", None, "intermediate_size"),
    "gpt2": ("n_layer", "n_head", None, "n_inner"),
    "llama": ("num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size"),
}


def _config_width(arch: Arch) -> Any:
    _, _, _, width_field = FIELDS[arch.family]
    width = getattr(arch.config, width_field, None)
    if width is None and arch.family == "gpt2":  # n_inner=None means 4 x n_embd
        width = 4 * arch.config.n_embd
    return width


def config_mismatches(arch: Arch) -> list[str]:
    """What the model's config says differently from its actual blocks (empty if nothing)."""
    if arch.config is None or arch.family not in FIELDS:
        return []
    layers, heads, kv_heads, _ = FIELDS[arch.family]
    actual = {
        "layers": [len(arch.blocks)],
        "heads": sorted({b.attention.num_heads for b in arch.blocks}),
        "key/value heads": sorted({b.attention.num_kv_heads for b in arch.blocks}),
        "MLP width": sorted({b.mlp.width for b in arch.blocks}),
    }
    config = {
        "layers": getattr(arch.config, layers, None),
        "heads": getattr(arch.config, heads, None),
        "key/value heads": getattr(arch.config, kv_heads, None) if kv_heads else None,
        "MLP width": _config_width(arch),
    }
    if config["key/value heads"] is None:
        actual.pop("key/value heads")
    return [f"{what} {values} (config: {config[what]})"
            for what, values in actual.items() if values != [config[what]]]


class RefusedSavePretrained:
    """Stands in for ``save_pretrained`` on a model its config cannot describe."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise UnsupportedModelError(
            "save_pretrained would write a config that does not describe this pruned model "
            f"({self.reason}), so from_pretrained could not load it",
            "save with pk.save(result, path) and load with pk.load(path)",
        )


def guard_save_pretrained(model: nn.Module, arch: Arch) -> str | None:
    """Make ``save_pretrained`` refuse on every module of ``model`` that has one, if the
    config does not describe the blocks; return the reason, or None if it does."""
    mismatches = config_mismatches(arch)
    if not mismatches:
        return None
    reason = "; ".join(mismatches)
    for module in model.modules():
        if callable(getattr(type(module), "save_pretrained", None)):
            vars(module)["save_pretrained"] = RefusedSavePretrained(reason)  # shadows the method
    return reason
