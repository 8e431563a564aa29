"""Add-ons applied to encoder features [B, T, D] (mask [B, T]); each keeps the shape."""

from __future__ import annotations

import torch
from torch import nn

from spaces._base import Categorical, Component, is_positive_int, registry


class MultiHeadSelfAttention(nn.Module):
    """Self-attention over the encoder's outputs, added residually so it can only refine them."""

    def __init__(self, dim: int, *, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"multi-head self-attention: feature size {dim} is not divisible by heads={heads}")
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(x, x, x, key_padding_mask=~mask, need_weights=False)
        return x + self.dropout(attended)


class LayerNorm(nn.Module):
    def __init__(self, dim: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


# Applied in this order: attention first, then normalisation of what it produced.
ADDONS = registry(
    "addons",
    "toggle",
    [
        Component(
            "mhsa",
            {"heads": Categorical((1, 2, 4, 8), allowed=is_positive_int, doc="a number of attention heads (positive integer)")},
            MultiHeadSelfAttention,
            "multi-head self-attention over the encoder, residual",
        ),
        Component("layernorm", {}, LayerNorm, "LayerNorm over the encoder features"),
    ],
)
