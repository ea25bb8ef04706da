"""Structured pruning of timm architectures (see ``timm_cases.py`` for the list).

Random weights (nothing is downloaded), small inputs. Per architecture, at sparsity 0.5:
outputs keep their shapes and stay finite, gradients are finite, parameters and MACs drop, a
layer halfway through that is ignored keeps its values; ``pk.save`` then ``pk.load`` onto a
freshly built model gives the same outputs (tolerance 1e-6); removing zeroed channels
changes no output (float64, tolerance 1e-5; only where a width is not normalised as a
whole by a LayerNorm / GroupNorm, there a zero channel still counts in the statistics). An architecture that cannot be pruned
correctly is refused before any change, with a typed error naming the module.
"""

from __future__ import annotations

import copy

import pytest
import torch
from structured_oracles import (
    check_result,
    check_save_load,
    dead_channel_equivalence,
    outputs,
)
from timm_cases import BY_NAME, CASES, middle_layer

import prunekit as pk
from prunekit import errors
from prunekit.measure.counting import count_macs

pytest.importorskip("timm")


def _param(name: str) -> object:
    marks = [pytest.mark.slow] if BY_NAME[name].slow else []
    return pytest.param(name, marks=marks, id=name)


PRUNED = [_param(c.name) for c in CASES if c.refused is None]
REFUSED = [_param(c.name) for c in CASES if c.refused is not None]


def test_matrix_is_wide_and_mostly_pruned() -> None:
    assert len(CASES) >= 30
    assert len(PRUNED) >= 0.9 * len(CASES)


@pytest.mark.parametrize("name", PRUNED)
def test_timm_pruned(name: str, tmp_path) -> None:
    case = BY_NAME[name]
    model, x = case.build(), case.inputs()
    before = outputs(model, x)
    result = check_result(model, x, pk.Structured(sparsity=0.5), [middle_layer(model)],
                          reference=(before, count_macs(model, x)))
    check_save_load(result, case.build, x, tmp_path / "pruned")
    removed = dead_channel_equivalence(copy.deepcopy(model), x)
    assert removed > 0 if case.exact else removed == 0


@pytest.mark.parametrize("name", REFUSED)
def test_timm_refused_untouched(name: str) -> None:
    case = BY_NAME[name]
    assert case.refused is not None
    error, module = case.refused
    model, x = case.build(), case.inputs()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(getattr(errors, error), match=module):
        pk.prune(model, pk.Structured(sparsity=0.5), x, inplace=True)
    after = model.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)
