"""Importing prunekit and loading an ``import:`` reference leave ``sys.path`` as it was."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.io.refs import importable_from_cwd

FACTORY = textwrap.dedent(
    """
    from torch import nn


    def build():
        return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    """
)


def test_importing_prunekit_leaves_sys_path_alone() -> None:
    code = (
        "import sys; before = list(sys.path); "
        "import prunekit, prunekit.io, prunekit.io.refs, prunekit.cli.app; "
        "print(sys.path == before)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert done.stdout.strip() == "True", done.stderr


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user project in the working directory, which is not on ``sys.path``."""
    name = "pk_user_factory_for_sys_path"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield tmp_path
    sys.modules.pop(name, None)


def test_loading_an_import_reference_leaves_sys_path_alone(project: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    result = pk.prune(model, pk.Unstructured(sparsity=0.5))
    folder = pk.save(result, project / "saved", model_ref="pk_user_factory_for_sys_path:build")
    before = list(sys.path)
    loaded = pk.load(folder, allow_import=True)  # found in the working directory
    assert sys.path == before
    x = torch.randn(3, 6)
    torch.testing.assert_close(loaded(x), result.model(x), rtol=0, atol=0)


def test_a_failed_import_leaves_sys_path_alone(project: Path) -> None:
    model = nn.Sequential(nn.Linear(6, 8))
    folder = pk.save(model, project / "saved", model_ref="pk_no_such_module_here:build")
    before = list(sys.path)
    with pytest.raises(pk.TargetError, match="pk_no_such_module_here"):
        pk.load(folder, allow_import=True)
    assert sys.path == before


def test_the_working_directory_is_importable_only_inside_the_block(project: Path) -> None:
    before = list(sys.path)
    with importable_from_cwd():
        assert sys.path[0] == os.getcwd()
    assert sys.path == before
    with pytest.raises(RuntimeError), importable_from_cwd():
        raise RuntimeError("user code failed")
    assert sys.path == before
