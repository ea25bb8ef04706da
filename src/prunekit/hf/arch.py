"""Where heads, MLP neurons and blocks live in the Hugging Face architectures prunekit knows.

Each adapter reads one block and returns plain data (module names, head counts, which
weight dimension indexes heads or neurons), so scoring, selection and surgery never need
to know the architecture. Known blocks: BERT (``BertLayer``), GPT-2 (``GPT2Block``) and
Llama with grouped-query attention (``LlamaDecoderLayer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import UnsupportedModelError


@dataclass(frozen=True)
class Slice:
    """One weight that loses rows/columns when heads or neurons go.

    ``module`` is a Linear (``transposed=False``: weight (out, in)) or a Hugging Face
    Conv1D (``transposed=True``: weight (in, out)). ``side`` is ``"out"`` (the module's
    outputs are removed, with its bias) or ``"in"`` (its inputs). ``offset`` is where the
    sliced span starts inside a fused output (GPT-2's ``c_attn`` = [q | k | v]).
    """

    module: str
    side: str
    transposed: bool = False
    offset: int = 0


@dataclass(frozen=True)
class Attention:
    """One self-attention: its modules and head layout.

    Query head ``h`` uses key/value head ``h // (num_heads // num_kv_heads)``.
    """

    holder: str  # module that carries the head-count attributes
    query: list[Slice]  # spans indexed by query head (q rows, o columns)
    kv: list[Slice]  # spans indexed by key/value head (k, v rows); == query side for MHA
    num_heads: int
    num_kv_heads: int
    head_dim: int
    output: str  # the output projection (its inputs are the concatenated heads)
    output_transposed: bool = False

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.num_kv_heads


@dataclass(frozen=True)
class MLP:
    """One feed-forward block: layers whose outputs are the neurons, and the one reading them."""

    inputs: list[Slice]
    output: Slice
    width: int
    holder: str | None = None  # module with an ``intermediate_size`` attribute, if any


@dataclass(frozen=True)
class Block:
    """One transformer block (layer) of the model."""

    name: str
    attention: Attention
    mlp: MLP


@dataclass
class Arch:
    """The blocks of a known architecture and the config they were built from."""

    family: str
    blocks_path: str
    blocks: list[Block]
    config: Any


def _bert(name: str, block: Any) -> Block:
    if getattr(block, "add_cross_attention", False):
        raise UnsupportedModelError(
            f"{name} has cross-attention, which prunekit does not prune",
            "prune encoder-only BERT models, or ignore head pruning (heads=0)",
        )
    sa = block.attention.self
    heads, head_dim = int(sa.num_attention_heads), int(sa.attention_head_size)
    qkv = [Slice(f"{name}.attention.self.{p}", "out") for p in ("query", "key", "value")]
    o = f"{name}.attention.output.dense"
    attention = Attention(
        f"{name}.attention.self", qkv + [Slice(o, "in")], [], heads, heads, head_dim, o
    )
    width = int(block.intermediate.dense.out_features)
    mlp = MLP([Slice(f"{name}.intermediate.dense", "out")], Slice(f"{name}.output.dense", "in"),
              width)
    return Block(name, attention, mlp)


def _gpt2(name: str, block: Any) -> Block:
    if hasattr(block, "crossattention"):
        raise UnsupportedModelError(f"{name} has cross-attention, which prunekit does not prune")
    attn = block.attn
    heads, head_dim = int(attn.num_heads), int(attn.head_dim)
    width = heads * head_dim
    qkv = [Slice(f"{name}.attn.c_attn", "out", True, k * width) for k in range(3)]
    o = f"{name}.attn.c_proj"
    attention = Attention(
        f"{name}.attn", qkv + [Slice(o, "in", True)], [], heads, heads, head_dim, o, True
    )
    mlp = MLP([Slice(f"{name}.mlp.c_fc", "out", True)], Slice(f"{name}.mlp.c_proj", "in", True),
              int(block.mlp.c_fc.nf))
    return Block(name, attention, mlp)


def _llama(name: str, block: Any) -> Block:
    attn = block.self_attn
    head_dim = int(attn.head_dim)
    heads = int(attn.q_proj.out_features) // head_dim
    kv_heads = int(attn.k_proj.out_features) // head_dim
    o = f"{name}.self_attn.o_proj"
    query = [Slice(f"{name}.self_attn.q_proj", "out"), Slice(o, "in")]
    kv = [Slice(f"{name}.self_attn.{p}", "out") for p in ("k_proj", "v_proj")]
    attention = Attention(f"{name}.self_attn", query, kv, heads, kv_heads, head_dim, o)
    mlp = MLP(
        [Slice(f"{name}.mlp.gate_proj", "out"), Slice(f"{name}.mlp.up_proj", "out")],
        Slice(f"{name}.mlp.down_proj", "in"),
        int(block.mlp.down_proj.in_features),
        holder=f"{name}.mlp",
    )
    return Block(name, attention, mlp)


ADAPTERS = {"BertLayer": ("bert", _bert), "GPT2Block": ("gpt2", _gpt2),
            "LlamaDecoderLayer": ("llama", _llama)}
KNOWN = ", ".join(f"{family} ({cls})" for cls, (family, _) in ADAPTERS.items())


def _block_list(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and all(
            type(child).__name__ in ADAPTERS for child in module
        ):
            return name, module
    return None


def _unknown_blocks(model: nn.Module) -> str:
    lists = [
        f"{name} ({type(m[0]).__name__})"
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m)
    ]
    return ", ".join(lists[:3]) if lists else "no nn.ModuleList of blocks"


def read_arch(model: nn.Module) -> Arch:
    """Describe the transformer blocks of ``model``.

    Raises:
        UnsupportedModelError: no block list of a known architecture, naming what was found.
    """
    found = _block_list(model)
    if found is None:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no transformer blocks prunekit knows; found "
            f"{_unknown_blocks(model)}",
            f"head/neuron/layer removal supports {KNOWN}; for other models use "
            "pk.Structured (generic channel pruning) or unstructured pruning",
        )
    path, blocks = found
    family, adapter = ADAPTERS[type(blocks[0]).__name__]
    prefix = f"{path}." if path else ""
    parsed = [adapter(f"{prefix}{i}", block) for i, block in enumerate(blocks)]
    first = model.get_submodule(parsed[0].attention.holder)
    return Arch(family, path, parsed, getattr(first, "config", None))
