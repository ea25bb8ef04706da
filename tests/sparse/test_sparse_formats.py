"""Storage formats: exact round trips, size accounting, automatic choice, corrupt parts."""

from __future__ import annotations

import math

import pytest
import torch

from prunekit.errors import FormatError
from prunekit.select.nm import nm_mask
from prunekit.sparse.decode import decode, decode_into
from prunekit.sparse.formats import (
    FORMATS,
    Encoded,
    choose_format,
    encode,
    format_bytes,
    group_counts,
)


def _sparse(shape: tuple[int, ...], density: float, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    keep = torch.rand(shape, generator=gen) < density
    value = torch.randn(shape, generator=gen).to(dtype) * keep
    return value, keep


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(16, 32), (8, 4, 3, 3), (7, 12)])
def test_every_format_round_trips_values_and_mask_exactly(dtype, shape):
    value, keep = _sparse(shape, 0.3, dtype)
    keep[0, 0] = True  # a kept weight that is exactly zero must survive as kept
    value[0, 0] = 0
    for fmt in FORMATS:
        if format_bytes(fmt, keep, value.element_size()) is None:
            continue
        enc = encode(value, fmt, keep)
        got, got_keep = decode(enc)
        assert got.dtype == dtype and torch.equal(got, value), fmt
        if fmt != "dense":
            assert torch.equal(got_keep, keep), fmt
        assert enc.nbytes == format_bytes(fmt, keep, value.element_size()), fmt


def test_nm_round_trip_keeps_mask_even_for_groups_with_fewer_kept():
    value, _ = _sparse((8, 16), 1.0, torch.float32)
    keep = nm_mask(value.abs(), 2, 4)
    keep[0, :4] = torch.tensor([True, False, False, False])  # a group with one kept
    value = value * keep
    enc = encode(value, "nm", keep)
    assert enc.params == {"n": 2, "m": 4}
    got, got_keep = decode(enc)
    assert torch.equal(got, value) and torch.equal(got_keep, keep)


def test_choose_format_picks_the_smallest_exact_format():
    for density in (0.01, 0.1, 0.5, 0.98):
        value, keep = _sparse((64, 128), density, torch.float32, seed=1)
        fmt = choose_format(value, keep)
        sizes = {f: format_bytes(f, keep, 4) for f in FORMATS}
        assert sizes[fmt] == min(s for s in sizes.values() if s is not None)
    assert choose_format(torch.arange(10)) == "dense"  # integer tensors stay dense


def test_sizes_reach_the_issue_figures():
    rows, cols = 512, 512
    dense_bytes = rows * cols * 4
    for sparsity, limit in ((0.90, 0.15), (0.95, 0.09)):
        value, keep = _sparse((rows, cols), 1 - sparsity, torch.float32, seed=2)
        enc = encode(value, choose_format(value, keep), keep)
        assert enc.nbytes / dense_bytes <= limit
    weight = torch.randn(rows, cols)
    weight = (weight * nm_mask(weight.abs(), 2, 4)).half()
    enc = encode(weight, choose_format(weight))
    assert enc.format == "nm"
    assert enc.nbytes / (rows * cols * 2) <= 0.57


def test_encode_rejects_values_outside_the_mask_and_bad_formats():
    value = torch.ones(4, 4)
    with pytest.raises(FormatError, match="outside its keep-mask"):
        encode(value, "bitmask", torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(FormatError, match="does not apply"):
        encode(torch.ones(5), "csr")
    with pytest.raises(FormatError, match="unknown storage format"):
        format_bytes("coo", torch.ones(2, 2, dtype=torch.bool), 4)


def _corrupt(enc: Encoded, part: str, new: torch.Tensor) -> Encoded:
    return Encoded(enc.format, enc.shape, {**enc.parts, part: new}, enc.params)


def test_decode_rejects_inconsistent_parts():
    value, keep = _sparse((8, 16), 0.2, torch.float32, seed=3)
    csr = encode(value, "csr", keep)
    bad_col = csr.parts["col"].clone()
    bad_col[0] = 16
    bad_crow = csr.parts["crow"].clone()
    bad_crow[1], bad_crow[2] = bad_crow[2], bad_crow[1] + 100
    bitmask = encode(value, "bitmask", keep)
    gaps = encode(value, "gaps", keep)
    zero_gap, long_gap = gaps.parts["gaps"].clone(), gaps.parts["gaps"].clone()
    zero_gap[1] = 0  # an escape: one value too many
    long_gap[-1] = 255  # past the last entry
    nm_value = value * nm_mask(value.abs() + 1, 2, 4)
    nm = encode(nm_value, "nm")
    cases = [
        _corrupt(csr, "col", bad_col),
        _corrupt(csr, "crow", bad_crow),
        _corrupt(csr, "col", csr.parts["col"].to(torch.int64)),
        _corrupt(bitmask, "values", bitmask.parts["values"][:-1]),
        _corrupt(bitmask, "bits", bitmask.parts["bits"][:-1]),
        _corrupt(gaps, "gaps", zero_gap),
        _corrupt(gaps, "gaps", long_gap),
        _corrupt(gaps, "values", gaps.parts["values"][:-1]),
        _corrupt(gaps, "gaps", gaps.parts["gaps"].to(torch.int32)),
        _corrupt(nm, "index", torch.zeros_like(nm.parts["index"])),  # repeated positions
        Encoded("nm", nm.shape, nm.parts, {"n": 2, "m": 5}),
        Encoded("csr", (8, 16), {"values": value}, {}),
        Encoded("dense", (8, 15), {"values": value}, {}),
        Encoded("zip", (8, 16), {"values": value}, {}),
    ]
    for enc in cases:
        with pytest.raises(FormatError):
            decode(enc)


def test_all_zero_and_empty_tensors():
    zero = torch.zeros(4, 8)
    fmt = choose_format(zero)
    got, _ = decode(encode(zero, fmt))
    assert torch.equal(got, zero)
    empty = torch.zeros(0, 3)
    assert choose_format(empty) == "dense"
    assert math.prod(decode(encode(empty, "dense"))[0].shape) == 0


@pytest.mark.parametrize(("last", "escapes"), [(255, 0), (256, 1), (510, 1), (511, 2)])
def test_gaps_escape_distances_over_255_exactly(last, escapes):
    keep = torch.zeros(8, 128, dtype=torch.bool)
    keep.view(-1)[[0, last, 1023]] = True
    value = keep * torch.arange(1.0, 1025.0).view(8, 128)
    enc = encode(value, "gaps", keep)
    assert int((enc.parts["gaps"] == 0).sum()) == escapes + (1022 - last) // 255
    assert enc.nbytes == format_bytes("gaps", keep, 4)
    got, got_keep = decode(enc)
    assert torch.equal(got, value) and torch.equal(got_keep, keep)


@pytest.mark.parametrize("fmt", ["bitmask", "gaps"])
def test_large_sparse_tensors_decode_exactly_on_several_threads(fmt):
    value, keep = _sparse((1024, 1100), 0.1, torch.float32, seed=4)  # > 1M entries: chunked
    param = torch.nn.Parameter(torch.randn(1024, 1100))  # decoding into a model's weight
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        enc = encode(value, fmt, keep)
        got, got_keep = decode(enc)
        with torch.no_grad():
            decode_into(enc, param)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got, value) and torch.equal(got_keep, keep)
    assert torch.equal(param.detach(), value)


def test_group_counts_match_a_plain_sum():
    keep = torch.rand(6, 48) < 0.5
    counts = group_counts(keep)
    assert set(counts) == {4, 8, 16}
    for m, per_group in counts.items():
        assert torch.equal(per_group, keep.reshape(-1, m).sum(1).int()), m
    assert set(group_counts(torch.rand(3, 20) < 0.5)) == {4}
    assert group_counts(torch.rand(3, 6) < 0.5) == {}
