"""Rebuild a head/neuron/layer-pruned Hugging Face model from its original and the plan.

The plan of a :class:`~prunekit.specs.TransformerStructured` result describes the pruned
model relative to the original architecture:

- ``removed_modules``: blocks deleted from their ``nn.ModuleList``, highest index first;
  later blocks move down (``encoder.layer.5`` becomes ``encoder.layer.4``), exactly as
  ``save_pretrained`` numbers them;
- ``attributes``: module attributes by their (renumbered) path, the config fields that
  changed under ``"config"`` and their original values under ``"config_before"``;
- ``shapes``: every parameter and buffer shape after pruning.

A loader builds the original model (from the original config, i.e. the saved config with
``attributes["config_before"]`` applied), calls :func:`rebuild_transformer`, then loads the
pruned weights with ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

from torch import nn

from ..apply.surgery.rebuild import resize_tensor
from ..errors import PlanError
from ..plan import Plan
from .arch import read_arch
from .save_guard import guard_save_pretrained

CONFIG_KEYS = ("config", "config_before")


def original_config_values(plan: Plan) -> dict[str, object]:
    """Config fields to set on a pruned model's config to get the original one back."""
    return dict(plan.attributes.get("config_before", {}))


def _check_removed(model: nn.Module, plan: Plan) -> None:
    for name in plan.removed_modules:
        parent, _, index = name.rpartition(".")
        try:
            container = model.get_submodule(parent)
        except AttributeError as exc:
            raise PlanError(f"the plan removes {name!r}, which the model lacks") from exc
        if not isinstance(container, nn.ModuleList) or not index.isdigit() or int(index) >= len(
            container
        ):
            raise PlanError(
                f"the plan removes {name!r}, which is not a block of an nn.ModuleList here",
                "rebuild from the original (unpruned) architecture",
            )


def rebuild_transformer(model: nn.Module, plan: Plan) -> nn.Module:
    """Resize an original Hugging Face model, in place, to the pruned architecture of ``plan``.

    Works on a model built from the original config, and on one built from the pruned
    config (what ``save_pretrained`` or the saved ``config.to_dict()`` give): blocks already
    gone are not removed twice, widths already right are kept.

    Args:
        model: the original model (same class), from the original or the pruned config.
        plan: the plan of a ``TransformerStructured`` result.

    Returns:
        ``model``, with blocks removed, attributes and config set and tensors resized
        (uninitialised): load the pruned state dict next.

    Raises:
        PlanError: the plan does not fit the model (block names are checked before any
            change).
    """
    if not _blocks_already_removed(model, plan):
        _remove_blocks(model, plan)
    _set_attributes(model, plan)
    for key, shape in plan.shapes.items():
        module_name, _, leaf = key.rpartition(".")
        try:
            module = model.get_submodule(module_name)
        except AttributeError as exc:
            raise PlanError(f"the plan gives a shape for {key!r}, which the model lacks") from exc
        resize_tensor(module, leaf, shape)
    guard_save_pretrained(model, read_arch(model))
    return model


def _blocks_already_removed(model: nn.Module, plan: Plan) -> bool:
    """True if ``model`` was built from the pruned config (its block count is already final)."""
    after = plan.attributes.get("config", {}).get("num_hidden_layers")
    before = plan.attributes.get("config_before", {}).get("num_hidden_layers")
    if not plan.removed_modules or after is None or before is None:
        return False
    try:
        container = model.get_submodule(plan.removed_modules[0].rpartition(".")[0])
    except AttributeError:
        return False
    return isinstance(container, nn.ModuleList) and len(container) == after != before


def _remove_blocks(model: nn.Module, plan: Plan) -> None:
    _check_removed(model, plan)
    for name in plan.removed_modules:
        parent, _, index = name.rpartition(".")
        container = model.get_submodule(parent)
        assert isinstance(container, nn.ModuleList)
        del container[int(index)]


def _set_attributes(model: nn.Module, plan: Plan) -> None:
    config = read_arch(model).config
    for name, attrs in plan.attributes.items():
        if name == "config_before":
            continue
        try:
            target = config if name == "config" else model.get_submodule(name)
        except AttributeError as exc:
            raise PlanError(f"the plan sets attributes of {name!r}, which the model lacks") from exc
        for attr, value in attrs.items():
            setattr(target, attr, value)
