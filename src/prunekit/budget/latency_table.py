"""A per-layer latency table: each prunable layer timed on the target device at a few widths.

The layers a forward pass runs (:mod:`.layer_calls`: convolutions, linear layers, norms, and
the activations and poolings that follow them) are recorded with their input shapes at the
target batch. Each distinct layer *signature* (type,
widths, kernel, stride, groups, input shape, dtype, threads) is timed once per width on a
fresh layer of that shape with random weights, the smallest of a few calls after a warm-up,
and cached on disk under the user cache dir, keyed by the device's name and the torch
version (``PRUNEKIT_CACHE_DIR`` overrides the folder). A layer is timed at full width and,
for each prunable side (inputs, outputs), at the :data:`FRACTIONS` of it with the other side
full; the cost model multiplies the two curves.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import FormatError
from ..io.atomic import atomic_text
from ..measure.latency import fixed_threads
from ..measure.timing import elapsed_ms
from .layer_calls import LayerCall
from .targets import Latency

log = logging.getLogger(__name__)
FRACTIONS = (0.75, 0.5, 0.25)  # besides full width, per prunable side
CALLS = 3  # timed calls per width after one warm-up (the smallest counts) ...
MIN_TIMED_MS = 30.0  # ... and more calls, up to MAX_CALLS, until this much was timed
MAX_CALLS = 50
CACHE_FORMAT = 1
class _ChannelsFirstLayerNorm(nn.Module):
    """A LayerNorm over dim 1 (as torchvision's ``LayerNorm2d`` does: permute, norm, back)."""

    def __init__(self, width: int, affine: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


def _build(call: LayerCall, n_in: int, n_out: int) -> tuple[nn.Module, list[int]]:
    """A fresh layer like ``call``'s at ``n_in`` inputs / ``n_out`` outputs, and its input
    shape."""
    s = call.settings
    shape = list(call.shape)
    if s.get("elementwise") and call.module is not None:  # an activation, a pooling
        shape[s["dim"]] = n_in
        return copy.deepcopy(call.module), shape
    last = call.kind == "Linear" or (call.kind == "LayerNorm" and s.get("dim", -1) == -1)
    shape[-1 if last else 1] = n_in
    if call.kind == "Linear":
        return nn.Linear(n_in, n_out, bias=s["bias"]), shape
    if call.kind.startswith("BatchNorm"):
        return getattr(nn, call.kind)(n_in, affine=s["affine"]), shape
    if call.kind == "LayerNorm":
        norm = (nn.LayerNorm(n_in, elementwise_affine=s["affine"]) if last
                else _ChannelsFirstLayerNorm(n_in, s["affine"]))
        return norm, shape
    groups = s["groups"]
    if groups > 1 and groups == s["in"]:  # depthwise: one group per input channel
        groups = n_in
    padding = s["padding"] if isinstance(s["padding"], str) else tuple(s["padding"])
    common = dict(kernel_size=tuple(s["kernel"]), stride=tuple(s["stride"]),
                  dilation=tuple(s["dilation"]), groups=groups, bias=s["bias"],
                  padding_mode=s["padding_mode"])
    if call.kind.startswith("ConvTranspose"):
        layer = getattr(nn, call.kind)(n_in, n_out, padding=padding,
                                       output_padding=tuple(s["output_padding"]), **common)
    else:
        layer = getattr(nn, call.kind)(n_in, n_out, padding=padding, **common)
    return layer, shape


def time_layer(call: LayerCall, n_in: int, n_out: int, target: Latency) -> float:
    """Milliseconds of one call of a fresh layer like ``call``'s at the given widths: the
    smallest of at least :data:`CALLS` calls (more for fast layers) after a warm-up."""
    device = torch.device(target.device)
    layer, shape = _build(call, n_in, n_out)
    layer = layer.eval().to(device=device, dtype=target.dtype)
    x = torch.randn(shape, device=device, dtype=target.dtype)
    samples: list[float] = []
    with fixed_threads(target.threads or torch.get_num_threads()), torch.inference_mode():
        layer(x)
        while len(samples) < MAX_CALLS and (len(samples) < CALLS
                                            or sum(samples) < MIN_TIMED_MS):
            samples.append(elapsed_ms(lambda: layer(x), device))
    return min(samples)


def device_name(device: str) -> str:
    """A name for the device the table was measured on (CPU model, GPU name)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine() or "cpu"
    return dev.type


def cache_dir() -> Path:
    """``$PRUNEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/prunekit``, else ``~/.cache/prunekit``."""
    explicit = os.environ.get("PRUNEKIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prunekit"


@dataclass
class TableCache:
    """The on-disk table for one device name and torch version: ``{key: ms}``."""

    path: Path
    entries: dict[str, float] = field(default_factory=dict)

    @classmethod
    def open(cls, device: str) -> TableCache:
        """The table of ``device``'s name and this torch version (empty if none is stored
        or it cannot be read)."""
        name = device_name(device)
        safe = "".join(c if c.isalnum() else "-" for c in name).strip("-")[:80] or "device"
        path = cache_dir() / "latency" / f"{safe}-torch{torch.__version__}.json"
        cache = cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") == CACHE_FORMAT and data.get("device") == name:
                cache.entries = {str(k): float(v) for k, v in data["entries"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # no table yet, or an unreadable one: measure again
        return cache

    def save(self, device: str) -> None:
        """Write the table (a temporary file renamed over the old one)."""
        payload = {"format": CACHE_FORMAT, "device": device_name(device),
                   "torch": torch.__version__, "entries": self.entries}
        try:
            atomic_text(self.path, json.dumps(payload, sort_keys=True), overwrite=True)
        except (OSError, FormatError) as exc:  # read-only: the next run measures again
            log.warning("could not write the latency table to %s: %s", self.path, exc)


def point_key(call: LayerCall, n_in: int, n_out: int, target: Latency) -> str:
    """The cache key of one timing: device, dtype, threads, layer signature, widths (the
    device's name and the torch version name the file)."""
    threads = target.threads or torch.get_num_threads()
    return (f"{target.device}|{target.dtype_name}|threads={threads}|{call.signature()}"
            f"|{n_in}x{n_out}")


@contextmanager
def _progress(total: int) -> Iterator[Any]:
    # shown on a terminal only (disable=None), and only when something is timed
    with tqdm(total=total, desc="latency table", unit="width",
              disable=None if total else True, leave=False) as bar:
        yield bar


def measure(points: dict[tuple[LayerCall, int, int], str],
            target: Latency) -> tuple[dict[str, float], int]:
    """Milliseconds of every ``(call, n_in, n_out)`` point, from the cache or timed now.

    Args:
        points: the points wanted, each with its :func:`point_key`.
        target: the device, dtype, batch and threads.

    Returns:
        ``{point key: ms}`` and how many were timed now (added to the cache on disk).
    """
    cache = TableCache.open(target.device)
    missing = {key: point for point, key in points.items() if key not in cache.entries}
    start = time.perf_counter()
    with _progress(len(missing)) as bar:
        for key, (call, n_in, n_out) in missing.items():
            cache.entries[key] = time_layer(call, n_in, n_out, target)
            bar.update(1)
    if missing:
        cache.save(target.device)
        log.info("latency table: timed %d layer widths in %.1f s (%d cached)", len(missing),
                 time.perf_counter() - start, len(points) - len(missing))
    return {key: cache.entries[key] for key in points.values()}, len(missing)
