"""Optional packages a run needs are checked before it starts, with the install command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from prunekit import MissingDependencyError
from prunekit.compare import CompareSettings
from prunekit.compare.requirements import check_requirements
from prunekit.errors import PrunekitError


def _settings(model_ref: str = "fmnist_resnet") -> CompareSettings:
    return CompareSettings(variants=(), out_dir=Path("unused"), model_ref=model_ref)


def test_missing_torchvision_is_named_for_a_torchvision_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(MissingDependencyError) as info:
        check_requirements(_settings("torchvision:resnet18"), plots=False)
    assert isinstance(info.value, PrunekitError) and isinstance(info.value, ImportError)
    assert "torchvision" in info.value.message and "--model torchvision:resnet18" in info.value.message
    assert info.value.hint == 'pip install "prunekit[vision]"'
    check_requirements(_settings(), plots=False)  # a zoo model does not need it


def test_every_missing_package_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError) as info:
        check_requirements(_settings("torchvision:resnet18"), plots=True)
    assert "matplotlib" in info.value.message and "torchvision" in info.value.message
    assert info.value.hint is not None
    assert 'pip install "prunekit[report,vision]"' in info.value.hint
    assert "--no-plots" in info.value.hint
