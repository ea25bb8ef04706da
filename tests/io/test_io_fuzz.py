"""Fuzzing: random edits of manifests and safetensors headers fail cleanly or load correctly.

Every mutated artefact must either load into a model whose outputs equal the saved model's,
or raise a :class:`PrunekitError`; any other exception is a bug.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
import xxhash
from torch import nn

import prunekit as pk
from prunekit.apply.masks import apply_mask
from prunekit.select.nm import nm_mask

ODD_VALUES: list[Any] = [None, -1, 0, 1, 3, 2**40, 1.5, "x", "", [], {}, True, "float16",
                         "csr", "nm", [1, 2], [-4], {"n": 9, "m": 4}, "zoo:lenet", "2:4"]


def _factory() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(4096, 8), nn.ReLU(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), nn.ReLU(),
        nn.Linear(4, 64),
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, nn.Module, torch.Tensor]:
    """A masked model whose tensors use every format: CSR, N:M, bitmask, gaps and dense."""
    model = _factory()
    gen = torch.Generator().manual_seed(0)
    far_apart = torch.zeros(8, 4096, dtype=torch.bool)
    far_apart[0, 0] = far_apart[7, -1] = True
    apply_mask(model[0], far_apart)  # csr
    apply_mask(model[2], nm_mask(model[2].weight.detach().abs(), 2, 4))  # nm
    apply_mask(model[4], torch.rand(4, 16, generator=gen) > 0.5)  # bitmask
    apply_mask(model[6], torch.rand(64, 4, generator=gen) > 0.92)  # gaps
    folder = pk.save(model, tmp_path_factory.mktemp("fuzz") / "base")
    formats = {t.format for t in pk.io.read_manifest(folder).tensors.values()}
    assert formats == {"csr", "nm", "bitmask", "gaps", "dense"}
    return folder, model, torch.randn(3, 4096, generator=gen)


def _copy(folder: Path, target: Path) -> Path:
    target.mkdir()
    for f in folder.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    return target


def _resync(folder: Path) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    weights = (folder / "model.safetensors").read_bytes()
    data["weights"].update(bytes=len(weights), sha256=hashlib.sha256(weights).hexdigest(),
                           crc32=f"{zlib.crc32(weights):08x}",
                           xxh3_64=xxhash.xxh3_64_hexdigest(weights))
    (folder / "manifest.json").write_text(json.dumps(data))


def _mutate_json(node: Any, rng: random.Random, depth: int = 0) -> Any:
    """Replace, delete or grow one random node of a JSON tree (returns the new tree).

    The root is always descended into, half the time through ``tensors`` (the deepest part).
    """
    if isinstance(node, dict) and node and (depth == 0 or rng.random() < 0.8):
        deep = depth == 0 and "tensors" in node and rng.random() < 0.5
        key = "tensors" if deep else rng.choice(sorted(node))
        action = rng.random()
        if action < 0.2:
            del node[key]
        elif action < 0.3:
            node[f"{key}x"] = rng.choice(ODD_VALUES)
        else:
            node[key] = _mutate_json(node[key], rng, depth + 1)
        return node
    if isinstance(node, list) and node and rng.random() < 0.8:
        index = rng.randrange(len(node))
        node[index] = _mutate_json(node[index], rng, depth + 1)
        return node
    return rng.choice(ODD_VALUES)


def _mutate_header(data: bytes, rng: random.Random) -> bytes:
    (length,) = struct.unpack("<Q", data[:8])
    header, body = bytearray(data[8 : 8 + length]), data[8 + length :]
    action = rng.random()
    if action < 0.4:
        for _ in range(rng.randint(1, 3)):
            header[rng.randrange(len(header))] = rng.randrange(256)
    elif action < 0.6:
        text = header.decode("utf-8", errors="replace")
        swaps = [("U8", "I8"), ("F32", "F16"), ("I32", "I64"), ("[8,", "[9,"), ("0,", "1,")]
        old, new = rng.choice(swaps)
        header = bytearray(text.replace(old, new, 1).encode())
    elif action < 0.8:
        length = rng.choice([0, 7, length - 1, length + 1, 2**40])
        return struct.pack("<Q", length) + bytes(header) + body
    else:
        return data[: rng.randrange(len(data))]
    return struct.pack("<Q", len(header)) + bytes(header) + body


def _check_load(folder: Path, model: nn.Module, x: torch.Tensor) -> str:
    try:
        loaded = pk.load(folder, build=_factory)
    except pk.PrunekitError:
        return "error"
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-5)
    return "loaded"


def test_mutated_manifests_fail_cleanly(saved, tmp_path):
    folder, model, x = saved
    rng = random.Random(0)
    outcomes = []
    for i in range(150):
        case = _copy(folder, tmp_path / f"m{i}")
        data = json.loads((case / "manifest.json").read_text())
        for _ in range(rng.randint(1, 3)):
            data = _mutate_json(data, rng)
        (case / "manifest.json").write_text(json.dumps(data))
        outcomes.append(_check_load(case, model, x))
    assert outcomes.count("error") > 50  # most edits must be caught


def test_mutated_weight_headers_fail_cleanly(saved, tmp_path):
    folder, model, x = saved
    rng = random.Random(1)
    outcomes = []
    for i in range(150):
        case = _copy(folder, tmp_path / f"w{i}")
        weights = case / "model.safetensors"
        weights.write_bytes(_mutate_header(weights.read_bytes(), rng))
        if rng.random() < 0.8:  # else the checksum catches it; resync to reach deeper checks
            _resync(case)
        outcomes.append(_check_load(case, model, x))
    assert outcomes.count("error") > 100
