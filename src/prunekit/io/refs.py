"""Model references: how ``load`` rebuilds the original architecture.

A reference is ``"<prefix>:<name>"``. Built-in prefixes:

- ``zoo:NAME``: a prunekit zoo model;
- ``torchvision:NAME``: ``torchvision.models.get_model(NAME, weights=None)``;
- ``hf:CLASS``: a Hugging Face ``transformers`` class built from the config stored in the
  manifest (``CLASS(config)``; no download, no remote code);
- ``import:package.module:factory``: calls a user factory, found among the installed
  packages or in the working directory (on ``sys.path`` only while the factory is imported
  and called; ``sys.path`` is never changed for good). Importing runs that package's code,
  so ``load`` refuses it unless ``allow_import=True``.

Other libraries add prefixes with :func:`register_builder`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import FormatError, PrunekitError, TargetError

BuildFn = Callable[[str, Mapping[str, Any]], nn.Module]


@dataclass(frozen=True)
class Builder:
    """Builds a model from the name after the prefix and the manifest's model entry."""

    build: BuildFn
    runs_user_code: bool = False


_BUILDERS: dict[str, Builder] = {}


def register_builder(prefix: str, build: BuildFn, *, runs_user_code: bool = False) -> None:
    """Register how to build models referenced as ``"<prefix>:<name>"``.

    Args:
        prefix: e.g. ``"timm"``; must not contain ``:``.
        build: ``build(name, model_entry) -> nn.Module``; ``model_entry`` is the manifest's
            ``"model"`` object (``ref``, ``class``, ``config``).
        runs_user_code: True if building imports or runs code named in the file; such
            references load only with ``allow_import=True``.
    """
    if not prefix or ":" in prefix:
        raise ValueError(f"bad builder prefix {prefix!r}")
    _BUILDERS[prefix] = Builder(build, runs_user_code)


def split_ref(ref: str) -> tuple[str, str]:
    """``"zoo:mlp"`` -> ``("zoo", "mlp")``; a bare name is a zoo name."""
    prefix, sep, name = ref.partition(":")
    if not sep:
        return "zoo", ref
    if prefix not in _builtin_or_registered():
        return "import", ref  # "package.module:factory"
    return prefix, name


def _builtin_or_registered() -> dict[str, Builder]:
    if not _BUILDERS:
        _register_builtins()
    return _BUILDERS


def normalize_ref(ref: str) -> str:
    """The canonical ``prefix:name`` form stored in manifests."""
    prefix, name = split_ref(ref)
    return f"{prefix}:{name}"


def build_from_ref(entry: Mapping[str, Any], allow_import: bool) -> nn.Module:
    """Build the model a manifest's model entry names.

    Raises:
        FormatError: no reference, an unknown prefix, or a build that fails.
        UnsupportedModelError: the reference runs user code and ``allow_import`` is False.
    """
    ref = entry.get("ref")
    if not isinstance(ref, str) or not ref:
        raise FormatError(
            f"the artefact records no model reference (model class {entry.get('class')!r})",
            "pass build=<a function returning the original, unpruned model>",
        )
    prefix, name = split_ref(ref)
    builder = _builtin_or_registered().get(prefix)
    if builder is None:
        raise FormatError(
            f"unknown model reference prefix {prefix!r} in {ref!r}",
            f"known: {sorted(_BUILDERS)}; or pass build=",
        )
    if builder.runs_user_code and not allow_import:
        from ..errors import UnsupportedModelError

        raise UnsupportedModelError(
            f"model reference {ref!r} would import and run code named in the file",
            "pass build=<factory>, or allow_import=True if you trust this artefact",
        )
    try:
        model = builder.build(name, entry)
    except (TargetError, FormatError):
        raise
    except Exception as exc:  # noqa: BLE001 - third-party builders fail in many ways
        raise FormatError(f"building {ref!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise FormatError(f"building {ref!r} gave {type(model).__name__}, not an nn.Module")
    return model


def _zoo(name: str, entry: Mapping[str, Any]) -> nn.Module:
    from .. import zoo

    return zoo.build(name)


def _torchvision(name: str, entry: Mapping[str, Any]) -> nn.Module:
    try:
        import torchvision
    except ImportError as exc:
        raise TargetError("torchvision is not installed", "pip install torchvision") from exc
    try:
        model: nn.Module = torchvision.models.get_model(name, weights=None)
    except ValueError as exc:
        raise TargetError(f"unknown torchvision model {name!r}") from exc
    return model


@contextlib.contextmanager
def importable_from_cwd() -> Iterator[None]:
    """The working directory is importable inside the block (as under ``python -m``).

    ``sys.path`` gets the working directory in front only if neither it nor ``""`` is
    there already, and loses exactly that entry again when the block ends, whatever
    happens inside: the process's import path is the same afterwards.
    """
    cwd = os.getcwd()
    if "" in sys.path or cwd in sys.path:
        yield
        return
    sys.path.insert(0, cwd)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(cwd)


def _import(name: str, entry: Mapping[str, Any]) -> nn.Module:
    module_name, _, attr = name.partition(":")
    with importable_from_cwd():  # the factory may import its own modules when called
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise TargetError(
                f"cannot import model factory {name!r}: {exc}",
                "use package.module:function, where function() returns an nn.Module",
            ) from exc
        return call_factory(factory, f"model factory {name!r}", TargetError)


def call_factory(
    factory: Callable[[], object], label: str, error: type[PrunekitError]
) -> nn.Module:
    """``factory()``, which must return an ``nn.Module``; anything else raises ``error``
    naming ``label`` (user code fails in many ways, each becomes one typed error)."""
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - user code
        raise error(f"{label} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise error(f"{label} returned {type(model).__name__}, not an nn.Module")
    return model


def _hf(name: str, entry: Mapping[str, Any]) -> nn.Module:
    import transformers

    config = entry.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise FormatError(f"hf:{name} needs the model's config (with model_type) in the manifest")
    cls = getattr(transformers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise FormatError(f"hf:{name} is not a transformers model class")
    settings = {k: v for k, v in config.items() if k != "model_type"}
    model: nn.Module = cls(transformers.AutoConfig.for_model(config["model_type"], **settings))
    return model


def _register_builtins() -> None:
    register_builder("zoo", _zoo)
    register_builder("torchvision", _torchvision)
    register_builder("hf", _hf)
    register_builder("import", _import, runs_user_code=True)


def infer_ref(model: nn.Module, keys: set[str] | None) -> dict[str, Any]:
    """A best-effort model entry for a model saved without an explicit reference.

    Hugging Face models are recognised by their config; zoo models by class and
    state-dict ``keys`` (exactly one zoo model must match; None: do not look); anything
    else records only its class (load then needs ``build=``).
    """
    cls = type(model)
    entry: dict[str, Any] = {
        "ref": None,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "config": None,
    }
    config = getattr(model, "config", None)
    if cls.__module__.startswith("transformers.") and config is not None:
        entry["ref"] = f"hf:{cls.__name__}"
        entry["config"] = _json_safe(config.to_dict())
    elif keys is not None and (cls.__module__.startswith("prunekit.zoo") or cls is nn.Sequential):
        entry["ref"] = _zoo_match(cls, keys)
    return entry


def _zoo_match(cls: type, keys: set[str]) -> str | None:
    from .. import zoo

    found = []
    for name in zoo.names():
        candidate = zoo.build(name)
        if type(candidate) is cls and set(candidate.state_dict()) == keys:
            found.append(name)
    return f"zoo:{found[0]}" if len(found) == 1 else None


def _json_safe(value: Any) -> Any:
    """Drop what JSON cannot hold (HF configs may carry dtypes and callables)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items() if _is_plain(v)}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value if _is_plain(v)]
    return value


def _is_plain(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, Mapping):
        return True
    return isinstance(value, (list, tuple))
