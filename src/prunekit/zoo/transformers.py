"""Small transformer reference models (attention as linear + reshape + SDPA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register


class SelfAttention(nn.Module):
    """Multi-head self-attention written as q/k/v linears + reshape + SDPA."""

    def __init__(self, dim: int, num_heads: int, causal: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.causal = causal
        self.q_proj = nn.Linear(dim, num_heads * self.head_dim)
        self.k_proj = nn.Linear(dim, num_heads * self.head_dim)
        self.v_proj = nn.Linear(dim, num_heads * self.head_dim)
        self.out_proj = nn.Linear(num_heads * self.head_dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self._heads(self.q_proj(x))  # (B, H, T, Dh)
        k = self._heads(self.k_proj(x))
        v = self._heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, T, Dh)
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)  # (B, T, H*Dh)
        return self.out_proj(out)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)); x + mlp(ln(x))."""

    def __init__(self, dim: int, num_heads: int, hidden: int, causal: bool = False) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads, causal)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class TransformerClassifier(nn.Module):
    """Token embedding + learned positions + encoder blocks + mean pool + linear head."""

    def __init__(
        self,
        vocab_size: int = 1000,
        max_len: int = 32,
        dim: int = 64,
        num_heads: int = 4,
        hidden: int = 128,
        depth: int = 2,
        num_classes: int = 4,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        self.blocks = nn.ModuleList(EncoderBlock(dim, num_heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[:, : tokens.shape[1]]  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))  # (B, num_classes)


@register(
    "transformer",
    (16,),
    input_dtype=torch.long,
    vocab_size=1000,
    description="2-layer transformer encoder classifier (4 heads, dim 64), token inputs",
)
def transformer() -> nn.Module:
    """2-layer transformer encoder classifier over 16 token ids (vocabulary 1000)."""
    return TransformerClassifier()
