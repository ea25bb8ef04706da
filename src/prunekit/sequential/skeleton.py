"""The model's skeleton on the ``meta`` device, and putting real tensors into parts of it.

The skeleton is the Hugging Face model built from ``config.json`` under
``torch.device("meta")``: every module exists, no weight takes memory. Its buffers that a
checkpoint does not hold (rotary frequencies, position ids) come from a *donor*: the same
class built for real with one block and a tiny vocabulary, which costs about one block.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import FormatError, UnsupportedModelError
from ..targets import qualified_name
from .source import StoredTensor

logger = logging.getLogger(__name__)
DONOR_VOCAB = 64
Reader = Callable[[list[str]], dict[str, torch.Tensor]]


def read_config(folder: Path) -> Any:
    """The folder's ``transformers`` config (local files only, no remote code).

    Raises:
        FormatError: ``config.json`` is not a config ``transformers`` knows.
    """
    import transformers

    try:
        return transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises many error types here
        raise FormatError(f"{folder / 'config.json'} is not a usable config: "
                          f"{type(exc).__name__}: {exc}",
                          "pass a folder written by save_pretrained") from exc


def _build(config: Any, dtype: torch.dtype) -> nn.Module:
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, str(name), None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            model: nn.Module = cls._from_config(config, dtype=dtype)
            return model
    built: nn.Module = transformers.AutoModel.from_config(config, dtype=dtype)
    return built


def build_meta(config: Any, dtype: torch.dtype) -> nn.Module:
    """The model ``config`` describes, on the meta device, in ``dtype``, in eval mode.

    Raises:
        UnsupportedModelError: ``transformers`` cannot build it from the config.
    """
    try:
        with torch.device("meta"):
            model = _build(config, dtype)
    except Exception as exc:  # noqa: BLE001 - transformers raises many error types here
        raise UnsupportedModelError(
            f"cannot build {getattr(config, 'architectures', None) or config.model_type} "
            f"from its config: {type(exc).__name__}: {exc}",
            "the model must be a transformers class that builds from its config",
        ) from exc
    return model.eval()


def find_block_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ``nn.ModuleList`` of same-typed blocks holding most of the parameters.

    Raises:
        UnsupportedModelError: the model has no such list.
    """
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or not len(module):
            continue
        if len({type(child) for child in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if best is None or size > best[0]:
            best = (size, name, module)
    if best is None or not best[0]:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no list of same-typed blocks to load one at a time",
            "prune it in memory with pk.prune",
        )
    return best[1], best[2]


def _donor_config(config: Any) -> Any:
    small = copy.deepcopy(config)
    small.num_hidden_layers = 1
    vocab = getattr(small, "vocab_size", None)
    if isinstance(vocab, int) and vocab > DONOR_VOCAB:
        small.vocab_size = DONOR_VOCAB
        for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(small, attr, None)
            if isinstance(value, int) and value >= DONOR_VOCAB:
                setattr(small, attr, None)
    return small


def donor_buffers(config: Any, dtype: torch.dtype, blocks_path: str) -> tuple[
        dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Buffers as a real build makes them: ``(outside the blocks, by model key; inside the
    first block, by key relative to it)``.

    A one-block model with a tiny vocabulary is built for real, on the CPU, and dropped.
    """
    try:
        donor = _build(_donor_config(config), dtype)
    except Exception:  # noqa: BLE001 - some configs refuse a shrunk vocabulary
        logger.info("building a small donor failed; building one with the full vocabulary")
        small = copy.deepcopy(config)
        small.num_hidden_layers = 1
        donor = _build(small, dtype)
    first = f"{blocks_path}.0."
    outside, inside = {}, {}
    for name, buf in donor.named_buffers():
        if name.startswith(first):
            inside[name[len(first):]] = buf.detach().clone()
        elif not name.startswith(f"{blocks_path}."):
            outside[name] = buf.detach().clone()
    return outside, inside


def param_aliases(model: nn.Module) -> dict[str, list[str]]:
    """``{parameter key: every key naming the same Parameter}`` (tied weights)."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return {key: names for names in groups.values() for key in names}


def _base_prefix(model: nn.Module) -> str:
    prefix = getattr(model, "base_model_prefix", "")
    return prefix if isinstance(prefix, str) else ""


def stored_names(model: nn.Module, index: Mapping[str, StoredTensor]) -> dict[str, str | None]:
    """``{model state-dict key: stored name}``; None for buffers the checkpoint lacks.

    Names match exactly, or with the model's base prefix (``bert.``) added or removed, or
    through a tied weight stored under another name.

    Raises:
        FormatError: a parameter is missing or a stored tensor has another shape, naming it.
    """
    prefix = _base_prefix(model)
    state = model.state_dict(keep_vars=True)
    params = {k for k, _ in model.named_parameters(remove_duplicate=False)}
    aliases = param_aliases(model)

    def lookup(key: str) -> str | None:
        candidates = [key]
        if prefix:
            candidates += [key[len(prefix) + 1:]] if key.startswith(prefix + ".") else []
            candidates += [f"{prefix}.{key}"]
        return next((c for c in candidates if c in index), None)

    found: dict[str, str | None] = {}
    missing = []
    for key in state:
        name = lookup(key)
        if name is None and key in params:
            name = next((n for a in aliases[key] if (n := lookup(a)) is not None), None)
        if name is None and key in params:
            missing.append(key)
        found[key] = name
    if missing:
        raise FormatError(
            f"the shards lack {len(missing)} weights the config's model has: {missing[:5]}",
            "the config and the shards come from different models; use one checkpoint folder",
        )
    wrong = [f"{k}: config {list(state[k].shape)} vs shard {list(index[n].shape)}"
             for k, n in found.items() if n is not None and tuple(state[k].shape)
             != index[n].shape]
    if wrong:
        raise FormatError(
            f"stored tensors do not have the shapes the config gives: {wrong[:5]}",
            "the config and the shards come from different models; use one checkpoint folder",
        )
    unused = sorted(set(index) - {n for n in found.values() if n is not None})
    if unused:
        logger.warning("%d stored tensors are not part of the model and are left out: %s",
                       len(unused), unused[:5])
    return found


@dataclass
class Skeleton:
    """The meta model, where its blocks are, and where each of its tensors comes from."""

    model: nn.Module
    blocks_path: str
    blocks: nn.ModuleList
    names: dict[str, str | None]  # model state-dict key -> stored name (None: donor)
    outside_buffers: dict[str, torch.Tensor]
    block_buffers: dict[str, torch.Tensor]
    aliases: dict[str, list[str]] = field(default_factory=dict)

    def block_name(self, i: int) -> str:
        return qualified_name(self.blocks_path, str(i))

    def block_keys(self, i: int) -> list[str]:
        prefix = self.block_name(i) + "."
        return [k for k in self.names if k.startswith(prefix)]

    def outside_keys(self) -> list[str]:
        prefix = self.blocks_path + "."
        return [k for k in self.names if not k.startswith(prefix)]

    def read_value(self, key: str, read: Reader) -> torch.Tensor:
        """The tensor of state-dict ``key``: from the checkpoint, or the donor's buffer."""
        stored = self.names[key]
        if stored is not None:
            return read([stored])[stored]
        if key in self.outside_buffers:
            return self.outside_buffers[key]
        rel = key[len(self.blocks_path) + 1:].partition(".")[2]
        return self.block_buffers[rel]


def load_block(skeleton: Skeleton, i: int, read: Reader, device: torch.device) -> nn.Module:
    """A real copy of block ``i`` on ``device``: its stored tensors, the donor's buffers.

    Args:
        skeleton: the meta model.
        i: the block index.
        read: reads stored names into CPU tensors.
        device: where the block lives.

    Returns:
        The block, standalone (the skeleton's block stays on meta).
    """
    block = copy.deepcopy(skeleton.blocks[i]).to_empty(device=device)
    prefix = skeleton.block_name(i) + "."
    with torch.no_grad():
        for name, buf in block.named_buffers():
            if name in skeleton.block_buffers:
                buf.copy_(skeleton.block_buffers[name])
        state = block.state_dict(keep_vars=True)
        for key in skeleton.block_keys(i):  # one tensor at a time: no second copy of the block
            stored_name = skeleton.names[key]
            if stored_name is not None:
                state[key[len(prefix):]].copy_(read([stored_name])[stored_name])
    return block


def _set_param(model: nn.Module, keys: list[str], value: torch.Tensor) -> None:
    param = nn.Parameter(value, requires_grad=False)
    for key in keys:
        owner, _, attr = key.rpartition(".")
        model.get_submodule(owner)._parameters[attr] = param


def set_outside_buffers(skeleton: Skeleton, read: Reader, device: torch.device) -> None:
    """Give every buffer outside the blocks its real value on ``device``."""
    model = skeleton.model
    prefix = skeleton.blocks_path + "."
    for name, buf in list(model.named_buffers()):
        if name.startswith(prefix):
            continue
        stored = skeleton.names.get(name)
        value = read([stored])[stored] if stored is not None else skeleton.outside_buffers.get(
            name)
        if value is None:
            raise UnsupportedModelError(f"buffer {name!r} is neither stored nor rebuilt",
                                        "prune this model in memory with pk.prune")
        owner, _, attr = name.rpartition(".")
        model.get_submodule(owner)._buffers[attr] = value.to(device=device, dtype=buf.dtype)


@contextlib.contextmanager
def loaded_on_call(skeleton: Skeleton, read: Reader, device: torch.device) -> Iterator[None]:
    """Inside the block, a module outside the blocks gets its stored parameters when it is
    first called (tied ones once for all their names); on exit every parameter that was
    loaded goes back to meta, so only the modules a forward pass reaches take memory."""
    model = skeleton.model
    prefix = skeleton.blocks_path + "."
    loaded: dict[str, tuple[torch.Size, torch.dtype]] = {}

    def hook_for(module_name: str) -> Callable[..., None]:
        def hook(module: nn.Module, _: Any) -> None:
            for pname, param in list(module.named_parameters(recurse=False)):
                key = qualified_name(module_name, pname)
                if param.device.type != "meta" or key in loaded:
                    continue
                stored = skeleton.names[key]
                assert stored is not None  # stored_names checked every parameter
                value = read([stored])[stored].to(device=device, dtype=param.dtype)
                _set_param(model, skeleton.aliases[key], value)
                loaded.update({k: (param.shape, param.dtype) for k in skeleton.aliases[key]})

        return hook

    handles = [
        module.register_forward_pre_hook(hook_for(name))
        for name, module in model.named_modules()
        if not (name + ".").startswith(prefix) and name != skeleton.blocks_path
        and any(True for _ in module.parameters(recurse=False))
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        done: set[str] = set()
        for key, (shape, dtype) in loaded.items():
            if key not in done:
                _set_param(model, skeleton.aliases[key],
                           torch.empty(shape, dtype=dtype, device="meta"))
                done.update(skeleton.aliases[key])


@contextlib.contextmanager
def installed(skeleton: Skeleton, i: int, block: nn.Module) -> Iterator[None]:
    """Inside, ``block`` (a real one) stands at place ``i`` of the skeleton's block list, so
    the model's module names reach it; on exit the meta block is back."""
    meta = skeleton.blocks[i]
    skeleton.blocks[i] = block
    try:
        yield
    finally:
        skeleton.blocks[i] = meta
