"""Calibration hooks: the only place where calibration data touches the model.

Calibration runs block by block (a transformer layer at a time), so memory stays bounded
by one block's inputs plus one statistic per targeted layer:

1. :func:`capture_block_inputs` runs the model on every calibration batch and stops at the
   first block, keeping that block's positional and keyword arguments;
2. :class:`InputStats` hooks record, for each targeted layer of the current block, the
   sum of squares of its input features (Wanda) or its input Gram matrix ``X^T X``
   (SparseGPT), and the sum of its inputs (for bias correction), skipping padded tokens;
3. :func:`run_block` replays the cached inputs through a block to get the next block's
   inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import CalibrationError
from ..inputs import call_model
from .conv import conv_rows

Batch = torch.Tensor | Sequence[Any] | Mapping[str, Any]


@dataclass
class BlockInput:
    """The arguments one calibration batch passes to a block, plus its token mask."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    token_mask: torch.Tensor | None  # (batch, seq) True = real token, or None


class StopForward(Exception):
    """Raised by a hook to end a forward pass whose remaining work is not needed."""


def check_calibration(calibration: Any, method: str) -> list[Batch]:
    """Validate ``calibration`` (a non-empty list of batches) before anything is mutated.

    Raises:
        CalibrationError: missing, empty, or a batch of the wrong type.
    """
    hint = (
        f"{method} needs calibration data: pass calibration=[batch, ...] where each batch is "
        "what the model accepts (a tensor, a tuple of arguments or a dict such as a "
        "tokenizer's output)"
    )
    if calibration is None:
        raise CalibrationError(f"{method} needs calibration data, got none", hint)
    if isinstance(calibration, (torch.Tensor, Mapping)):
        calibration = [calibration]
    batches = list(calibration)
    if not batches:
        raise CalibrationError(f"{method} got an empty calibration list", hint)
    for i, batch in enumerate(batches):
        if not isinstance(batch, (torch.Tensor, Mapping, tuple, list)):
            raise CalibrationError(
                f"calibration batch {i} is a {type(batch).__name__}, not a tensor, tuple or dict",
                hint,
            )
    return batches


def token_mask(batch: Batch) -> torch.Tensor | None:
    """The batch's (batch, seq) attention mask as bool, if it is a dict that has one."""
    if isinstance(batch, Mapping):
        mask = batch.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            return mask.bool()
    return None


def _is_cache(value: Any) -> bool:
    return "cache" in type(value).__name__.lower()


def _drop_caches(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Replace key/value cache objects by None: replaying a block must not grow a cache."""
    args = tuple(None if _is_cache(a) else a for a in args)
    kwargs = {k: (None if _is_cache(v) or k == "use_cache" else v) for k, v in kwargs.items()}
    return args, kwargs


def capture_block_inputs(
    model: nn.Module, first_block: nn.Module, batches: list[Batch]
) -> list[BlockInput]:
    """Run ``model`` on each batch up to ``first_block`` and keep that block's inputs.

    Raises:
        CalibrationError: a batch does not run through the model, or never reaches the block.
    """
    captured: list[BlockInput] = []
    current: dict[str, torch.Tensor | None] = {"mask": None}

    def hook(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        clean_args, clean_kwargs = _drop_caches(tuple(args), dict(kwargs))
        captured.append(BlockInput(clean_args, clean_kwargs, current["mask"]))
        raise StopForward

    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for i, batch in enumerate(batches):
            current["mask"] = token_mask(batch)
            try:
                call_model(model, batch)
            except StopForward:
                continue
            except Exception as exc:  # noqa: BLE001 - user data/model failures are reported alike
                raise CalibrationError(
                    f"calibration batch {i} does not run through the model: "
                    f"{type(exc).__name__}: {exc}",
                    "calibration batches must be inputs the model accepts, e.g. the output "
                    "of the model's own tokenizer",
                ) from exc
            raise CalibrationError(f"calibration batch {i} never reached the first block")
    finally:
        handle.remove()
    return captured


def block_output(out: Any) -> torch.Tensor:
    """The hidden states a block returns (a tensor, or the first item of a tuple)."""
    return out if isinstance(out, torch.Tensor) else out[0]


def run_block(block: nn.Module, inputs: list[BlockInput]) -> list[BlockInput]:
    """Replay every cached input through ``block``; return the next block's inputs."""
    next_inputs = []
    for item in inputs:
        hidden = block_output(block(*item.args, **item.kwargs))
        if item.args:
            args = (hidden, *item.args[1:])
            next_inputs.append(BlockInput(args, item.kwargs, item.token_mask))
        else:
            kwargs = {**item.kwargs, "hidden_states": hidden}
            next_inputs.append(BlockInput(item.args, kwargs, item.token_mask))
    return next_inputs


def _rows(x: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """Flatten a layer input to (tokens, features), dropping padded tokens."""
    if token_mask is not None and x.dim() == 3 and x.shape[:2] == token_mask.shape:
        return x[token_mask.to(x.device)]  # (real tokens, features)
    return x.reshape(-1, x.shape[-1])  # (tokens, features)


def layer_rows(module: nn.Module, x: torch.Tensor,
               token_mask: torch.Tensor | None) -> Iterator[torch.Tensor]:
    """A layer's input as chunks of (tokens, features) in float64: a Linear's rows (padded
    tokens dropped) in one chunk, a Conv2d's unfolded patches a few images at a time."""
    if isinstance(module, nn.Conv2d):
        for rows in conv_rows(module, x):
            yield rows.double()
    else:
        yield _rows(x, token_mask).double()


class InputStats:
    """Forward pre-hooks that accumulate input statistics of linear and conv layers.

    A convolution's tokens are its unfolded input patches (see :mod:`.conv`), one per
    output position; they are read a few images at a time.

    Args:
        modules: ``{weight key: module}`` of the layers to watch.
        gram: also accumulate ``X^T X`` (for SparseGPT), not only per-feature sums of squares.
            It is kept in float32, as SparseGPT's reference implementation keeps it: a block's
            matrices are the largest memory of a block-by-block walk (a Llama MLP's
            ``5632 x 5632`` down-projection input alone is 121 MiB in float32); the
            per-feature sums stay float64.

    After :meth:`end_pass`, once every watched layer was seen exactly once in a forward
    pass, the hook of the last one raises :class:`StopForward` after recording: the rest of
    that pass (the last layer's own product and whatever follows it) is not needed.
    """

    def __init__(self, modules: Mapping[str, nn.Module], gram: bool) -> None:
        self.gram = gram
        self.sq_sum: dict[str, torch.Tensor] = {}
        self.x_sum: dict[str, torch.Tensor] = {}
        self.xtx: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}
        self.token_mask: torch.Tensor | None = None
        self.stop_after: str | None = None
        self._n_modules = len(modules)
        self._calls: list[str] = []  # keys seen in the current pass, in call order
        self._handles = [m.register_forward_pre_hook(self._hook_for(k))
                         for k, m in modules.items()]

    def _hook_for(self, key: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            self._calls.append(key)
            for rows in layer_rows(module, inputs[0].detach(), self.token_mask):
                self._add(key, rows)  # (tokens, in)
            if key == self.stop_after:
                raise StopForward

        return hook

    def _add(self, key: str, rows: torch.Tensor) -> None:
        """Add (tokens, in) float64 rows to the layer's sums."""
        self.count[key] = self.count.get(key, 0) + rows.shape[0]
        sq = rows.pow(2).sum(dim=0)
        self.sq_sum[key] = self.sq_sum[key] + sq if key in self.sq_sum else sq
        total = rows.sum(dim=0)
        self.x_sum[key] = self.x_sum[key] + total if key in self.x_sum else total
        if self.gram:  # float32 (see the class), summed in place: no (in, in) temporaries
            rows32 = rows.float()  # exact: the activations are at most float32
            if key in self.xtx:
                self.xtx[key].addmm_(rows32.t(), rows32)
            else:
                self.xtx[key] = rows32.t() @ rows32  # (in, in)

    def end_pass(self) -> None:
        """Close one forward pass; learn the last layer called if each was called once."""
        if (self.stop_after is None and len(self._calls) == self._n_modules
                and len(set(self._calls)) == self._n_modules):
            self.stop_after = self._calls[-1]
        self._calls = []

    def mean(self, key: str) -> torch.Tensor:
        """Mean input of one layer over the real (unpadded) calibration tokens, (in,)."""
        return self.x_sum[key] / max(self.count[key], 1)

    def remove(self) -> None:
        """Detach every hook."""
        for handle in self._handles:
            handle.remove()


def check_all_ran(keys: Iterable[str], seen: Container[str]) -> None:
    """Raise unless every layer in ``keys`` received calibration input.

    Raises:
        CalibrationError: naming the layers that never ran.
    """
    missing = [k for k in keys if k not in seen]
    if missing:
        raise CalibrationError(
            f"{', '.join(missing)} never ran on the calibration data, so "
            f"{'it has' if len(missing) == 1 else 'they have'} no statistics to prune by",
            "ignore these layers (ignore=[...]) or pass calibration batches that reach them",
        )


def _vocab_size(model: nn.Module) -> int | None:
    for module in model.modules():
        size = getattr(getattr(module, "config", None), "vocab_size", None)
        if isinstance(size, int):
            return size
    return None


def check_token_ids(model: nn.Module, batches: list[Batch]) -> None:
    """Raise if a batch holds token ids the model's vocabulary lacks (tokenizer mismatch).

    Raises:
        CalibrationError: naming the batch, its largest id and the model's vocabulary size.
    """
    vocab = _vocab_size(model)
    if vocab is None:
        return
    for i, batch in enumerate(batches):
        ids = batch.get("input_ids") if isinstance(batch, Mapping) else None
        if isinstance(ids, torch.Tensor) and ids.numel() and int(ids.max()) >= vocab:
            raise CalibrationError(
                f"calibration batch {i} has token id {int(ids.max())}, but the model's "
                f"vocabulary has {vocab} tokens: the tokenizer does not match the model",
                "tokenize calibration text with the model's own tokenizer "
                "(AutoTokenizer.from_pretrained(<the model's path>))",
            )


def run_calibration(model: nn.Module, stats: InputStats, batches: list[Batch]) -> None:
    """Run every batch through the whole model while ``stats`` records; then detach it.

    Raises:
        CalibrationError: a batch does not run through the model.
    """
    try:
        for i, batch in enumerate(batches):
            stats.token_mask = token_mask(batch)
            try:
                call_model(model, batch)
            except Exception as exc:  # noqa: BLE001 - user data/model failures are reported alike
                raise CalibrationError(
                    f"calibration batch {i} does not run through the model: "
                    f"{type(exc).__name__}: {exc}",
                    "calibration batches must be inputs the model accepts",
                ) from exc
    finally:
        stats.remove()
