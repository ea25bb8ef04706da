"""Shared pieces of the device / dtype tests: the devices and dtypes they run on, tiny
models, and the checks a user cares about (every tensor where and in what the model was)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")

# every case runs on the CPU, and again on CUDA where there is one (skipped, not dropped,
# where there is not: the report shows the CUDA cases exist)
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=needs_cuda)]
LOW_DTYPES = [pytest.param(torch.bfloat16, id="bf16"), pytest.param(torch.float16, id="fp16")]
VOCAB = 101


def on(model: nn.Module, device: str, dtype: torch.dtype) -> nn.Module:
    """A copy of ``model`` on ``device`` in ``dtype`` (the original stays as it is)."""
    return copy.deepcopy(model).to(device=device, dtype=dtype)


def floats_to(batch: Any, device: str, dtype: torch.dtype) -> Any:
    """``batch`` on ``device``, its floating tensors in ``dtype`` (token ids stay int64)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device=device, dtype=dtype if batch.is_floating_point() else None)
    if isinstance(batch, dict):
        return {k: floats_to(v, device, dtype) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(floats_to(v, device, dtype) for v in batch)
    return batch


def assert_placed(model: nn.Module, device: str, dtype: torch.dtype) -> None:
    """Every parameter and buffer is on ``device``; every floating one is in ``dtype``."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    assert tensors
    wrong_device = [n for n, t in tensors if t.device.type != device]
    wrong_dtype = [f"{n}: {t.dtype}" for n, t in tensors
                   if t.is_floating_point() and t.dtype != dtype]
    assert not wrong_device, f"not on {device}: {wrong_device}"
    assert not wrong_dtype, f"not {dtype}: {wrong_dtype}"


def outputs(model: nn.Module, inputs: Any) -> torch.Tensor:
    """The model's main output tensor (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    finally:
        model.train(was_training)
    if isinstance(out, torch.Tensor):
        return out
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def assert_finite_output(model: nn.Module, inputs: Any, shape: tuple[int, ...],
                         device: str, dtype: torch.dtype) -> torch.Tensor:
    """The model runs on ``inputs``; its output has ``shape``, is finite, on ``device`` in
    ``dtype``. Returns it."""
    out = outputs(model, inputs)
    assert tuple(out.shape) == shape
    assert out.device.type == device and out.dtype == dtype
    assert bool(torch.isfinite(out).all())
    return out


def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of positions where two masks agree."""
    return float((a.cpu() == b.cpu()).float().mean())


def _missing_kernel(exc: BaseException | None) -> str | None:
    """torch's own "not implemented for 'Half'" (or another dtype), anywhere in the chain."""
    while exc is not None:
        if isinstance(exc, (RuntimeError, NotImplementedError)) and "not implemented for" in str(
                exc):
            return str(exc).splitlines()[0]
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def torch_kernels(device: str, dtype: torch.dtype) -> Iterator[None]:
    """Skip (with torch's message as the reason) where torch itself has no kernel for
    ``dtype`` on ``device``; any other failure fails the test."""
    try:
        yield
    except Exception as exc:
        reason = _missing_kernel(exc)
        if reason is None:
            raise
        pytest.skip(f"torch has no {dtype} kernel on {device} for this op: {reason}")


def tiny_bert() -> nn.Module:
    """A 2-layer BERT encoder with random weights (seeded)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64,
    )
    return transformers.BertModel(config).eval()


def tiny_llama() -> nn.Module:
    """A 2-layer Llama LM with grouped-query attention (8 heads, 2 key/value heads)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
        bos_token_id=0, eos_token_id=0,
    )
    return transformers.LlamaForCausalLM(config).eval()


def tokens(seed: int = 0, size: int = 4, length: int = 12, labels: bool = False) -> dict:
    """Token ids with an attention mask (the last row padded at the end)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (size, length), generator=gen)
    mask = torch.ones_like(ids)
    mask[-1, length - 3:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    if labels:
        batch["labels"] = ids.clone()
    return batch
