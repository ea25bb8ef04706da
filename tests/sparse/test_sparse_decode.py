"""Fast decoding paths: masks filled from the same bits, chunked decode, CSR straight from
the stored parts. Each must equal the plain decode exactly."""

from __future__ import annotations

import importlib

import pytest
import torch

from prunekit.sparse import CSRLinear
from prunekit.sparse.decode import csr_parts, decode, decode_masked_into, empty_like_numpy
from prunekit.sparse.formats import FORMATS, encode, format_bytes

DECODE = importlib.import_module("prunekit.sparse.decode")


def _sparse(shape: tuple[int, ...], density: float, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(0)
    keep = torch.rand(shape, generator=gen) < density
    keep.view(-1)[:2] = True  # kept weights that are exactly zero (0.0 and -0.0)
    value = torch.randn(shape, generator=gen).to(dtype) * keep
    value.view(-1)[0], value.view(-1)[1] = 0.0, -0.0
    return value, keep


@pytest.mark.parametrize("mask_dtype", [torch.float32, torch.bfloat16, torch.bool])
@pytest.mark.parametrize("shape", [(16, 33), (5, 3, 7)])
def test_masked_decode_equals_decode_and_keep_mask(shape, mask_dtype):
    value, keep = _sparse(shape, 0.2)
    for fmt in FORMATS:
        if format_bytes(fmt, keep, value.element_size()) is None:
            continue
        enc = encode(value, fmt, keep if fmt != "dense" else None)
        out = torch.full(shape, 7.0)
        mask = torch.full(shape, 3, dtype=mask_dtype)
        decode_masked_into(enc, out, mask)
        dense, expected = decode(enc)
        assert torch.equal(out, dense), fmt
        assert torch.equal(mask, expected.to(mask_dtype)), fmt


def test_masked_decode_into_non_contiguous_targets():
    value, keep = _sparse((12, 16), 0.3)
    enc = encode(value, "bitmask", keep)
    out, mask = torch.empty(16, 12).t(), torch.empty(16, 12).t()
    decode_masked_into(enc, out, mask)
    assert torch.equal(out, value) and torch.equal(mask, keep.float())


@pytest.mark.parametrize("fmt", ["bitmask", "gaps"])
def test_chunked_decode_on_several_threads_equals_one_pass(monkeypatch, fmt):
    value, keep = _sparse((37, 29), 0.1)  # 1073 entries: the last byte is partial
    enc = encode(value, fmt, keep)
    one, one_mask = torch.empty(37, 29), torch.empty(37, 29)
    decode_masked_into(enc, one, one_mask)
    monkeypatch.setattr(DECODE, "PARALLEL_MIN_NUMEL", 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        many, many_mask = torch.empty(37, 29), torch.empty(37, 29)
        decode_masked_into(enc, many, many_mask)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(many, one) and torch.equal(many_mask, one_mask)
    assert torch.equal(one, value) and torch.equal(one_mask, keep.float())


@pytest.mark.parametrize("fmt", ["bitmask", "gaps", "csr"])
@pytest.mark.parametrize("shape", [(9, 20), (6, 2, 5)])
def test_csr_parts_equal_the_parts_of_a_converted_layer(fmt, shape):
    value, _ = _sparse(shape, 0.15)
    value[2] = 0  # an empty row
    enc = encode(value, fmt)  # kept = nonzeros, as for a sparse-stored layer
    crow, col, values = csr_parts(enc)
    linear = torch.nn.Linear(value[0].numel(), shape[0])
    with torch.no_grad():
        linear.weight.copy_(value.reshape(shape[0], -1))
    reference = CSRLinear.from_linear(linear)
    assert crow.dtype == col.dtype == torch.int32
    assert torch.equal(crow, reference.crow) and torch.equal(col, reference.col)
    assert torch.equal(values, reference.values)


def test_csr_parts_only_for_bitmask_gaps_and_csr():
    value, keep = _sparse((8, 8), 0.5)
    assert csr_parts(encode(value, "dense")) is None
    assert csr_parts(encode(torch.ones(8), "bitmask")) is None  # 1-D


def test_empty_like_numpy_gives_a_writable_tensor_of_any_float_dtype():
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        tensor = empty_like_numpy((3, 5), dtype)
        tensor.fill_(1)
        assert tensor.shape == (3, 5) and tensor.dtype == dtype and bool((tensor == 1).all())


@pytest.mark.parametrize("mask_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fmt", ["bitmask", "gaps"])
@pytest.mark.parametrize("numel", [0, 5, 16, 17, 1000])
def test_blockwise_zero_and_scatter_covers_every_entry(monkeypatch, numel, fmt, mask_dtype):
    monkeypatch.setattr(DECODE, "CACHE_BLOCK", 16)
    value, keep = _sparse((numel,), 0.3) if numel else (torch.zeros(0), torch.zeros(0) > 0)
    out = torch.full((numel,), 9.0, dtype=mask_dtype)  # bfloat16: the torch (not numpy) path
    mask = torch.full((numel,), 9.0, dtype=mask_dtype)
    decode_masked_into(encode(value.to(mask_dtype), fmt, keep), out, mask)
    assert torch.equal(out, value.to(mask_dtype)) and torch.equal(mask, keep.to(mask_dtype))
