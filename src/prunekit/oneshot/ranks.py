"""Calibration statistics summed over the ranks of a data-parallel job.

Each rank accumulates its share of the calibration tokens (:class:`.calibration.InputStats`,
:class:`.paired.PairedInputStats`); before a layer is pruned its sums and token count are
summed over every rank, so each rank prunes from the statistics of the whole calibration
set, as one process would. A layer no rank ran stays absent (and is reported as such).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..distributed import sum_across_ranks
from .calibration import InputStats
from .layers import layer_matrix
from .paired import PairedInputStats

Tables = dict[str, dict[str, torch.Tensor]]


def _reduce(tables: Tables, count: dict[str, int], widths: Mapping[str, int],
            square: set[str], device: torch.device) -> None:
    """Sum ``tables`` (``{table: {key: tensor}}``) and ``count`` over ranks, in place."""
    local: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for key, width in widths.items():
        local[f"count/{key}"] = torch.tensor([float(count.get(key, 0))])
        shapes[f"count/{key}"] = (1,)
        for table, values in tables.items():
            shapes[f"{table}/{key}"] = (width, width) if table in square else (width,)
            if key in values:
                local[f"{table}/{key}"] = values[key]
    summed = sum_across_ranks(local, shapes, device)
    for key in widths:
        total = int(summed[f"count/{key}"][0])
        for table, values in tables.items():
            if total:
                values[key] = summed[f"{table}/{key}"]
            else:
                values.pop(key, None)
        if total:
            count[key] = total
        else:
            count.pop(key, None)


def _widths(modules: Mapping[str, nn.Module]) -> tuple[dict[str, int], torch.device]:
    widths = {k: int(layer_matrix(m).shape[1]) for k, m in modules.items()}
    device = next((layer_matrix(m).device for m in modules.values()), torch.device("cpu"))
    return widths, device


def reduce_input_stats(stats: InputStats, modules: Mapping[str, nn.Module]) -> None:
    """Sum ``stats`` of ``modules`` over every rank, in place (every rank must call it).

    Args:
        stats: this rank's statistics of the layers.
        modules: ``{weight key: module}``, the same keys on every rank.
    """
    widths, device = _widths(modules)
    tables: Tables = {"sq_sum": stats.sq_sum, "x_sum": stats.x_sum}
    if stats.gram:
        tables["xtx"] = stats.xtx
    _reduce(tables, stats.count, widths, {"xtx"}, device)
    # summed in float64 across ranks, then kept in the float32 one process keeps
    stats.xtx.update({k: v.float() for k, v in stats.xtx.items()})


def reduce_paired_stats(stats: PairedInputStats, modules: Mapping[str, nn.Module]) -> None:
    """Sum paired statistics of ``modules`` over every rank, in place (every rank calls it).

    Args:
        stats: this rank's paired statistics of one stage.
        modules: ``{weight key: module}`` of that stage, the same keys on every rank.
    """
    widths, device = _widths(modules)
    tables: Tables = {"xtx": stats.xtx, "cross": stats.cross, "x_sum": stats.x_sum,
                      "dense_sum": stats.dense_sum}
    _reduce(tables, stats.count, widths, {"xtx", "cross"}, device)
