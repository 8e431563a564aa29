"""Models assembled from a sampled strategy."""

from __future__ import annotations

import torch
from torch import nn

from spaces import Strategy
from spaces.addons import ADDONS
from spaces.char_encoders import CHAR_ENCODERS
from spaces.encoders import ENCODERS


class TokenDropout(nn.Module):
    """Embedding dropout: zeroes whole token vectors (and rescales), not single coordinates."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.p:
            return x
        keep = torch.empty(x.shape[:-1] + (1,), device=x.device, dtype=x.dtype).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class TextClassifier(nn.Module):
    """embedding -> encoder -> add-ons -> masked max pooling over time -> dropout -> linear."""

    def __init__(self, embedding: nn.Embedding, embedding_dropout: float, encoder: nn.Module, addons: list[nn.Module], dropout: float, num_classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.embedding_dropout = TokenDropout(embedding_dropout)
        self.encoder = encoder
        self.addons = nn.ModuleList(addons)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.output_dim, num_classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pool(tokens, mask))

    def pool(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The pooled representation [B, D] the classifier reads (what mixup mixes)."""
        x = self.embedding_dropout(self.embedding(tokens))
        x = self.encoder(x, mask)
        for addon in self.addons:
            x = addon(x, mask)
        x = x.masked_fill(~mask.unsqueeze(-1), torch.finfo(x.dtype).min)
        return x.max(dim=1).values

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


def random_word_embedding(num_words: int, dim: int) -> nn.Embedding:
    """Word vectors trained from scratch, with Kim (2014)'s init (N(0, 1) is large for 300-d); row 0 is padding."""
    embedding = nn.Embedding(num_words, dim, padding_idx=0)
    with torch.no_grad():
        embedding.weight.uniform_(-0.25, 0.25)
        embedding.weight[0].zero_()
    return embedding


def word_and_char_features(word_embedding: nn.Embedding, char_encoder: nn.Module | None, words: torch.Tensor, chars: torch.Tensor) -> torch.Tensor:
    """Each token's word embedding, followed by its spelling's encoding when there is a char
    encoder: words [B, T], chars [B, T, W] -> [B, T, word dim (+ char dim)]."""
    x = word_embedding(words)
    if char_encoder is None:
        return x
    batch, length, width = chars.shape
    spelled = char_encoder(chars.reshape(batch * length, width)).reshape(batch, length, -1)
    return torch.cat([x, spelled.to(x.dtype)], dim=-1)


def build_char_encoder(strategy: Strategy, num_chars: int) -> tuple[nn.Module | None, int]:
    """The strategy's character encoder (None for a component without one, `none`) and its output size."""
    name, params = strategy.choice("char_encoder")
    build = CHAR_ENCODERS[name].build
    encoder = build(num_chars, **params) if build is not None else None
    return encoder, encoder.output_dim if encoder is not None else 0


def build_text_classifier(strategy: Strategy, vocab_size: int, num_classes: int) -> TextClassifier:
    dropout = strategy.regularizer("dropout", "p")
    embedding = random_word_embedding(vocab_size, strategy.embedding_dim)
    encoder_name, encoder_params = strategy.encoder
    encoder = ENCODERS[encoder_name].build(strategy.embedding_dim, dropout=dropout, **encoder_params)
    # Registry order, not sampling order, so a given set of add-ons always builds the same model.
    addons = [
        ADDONS[name].build(encoder.output_dim, dropout=dropout, **strategy.addons[name])
        for name in ADDONS.names()
        if name in strategy.addons
    ]
    return TextClassifier(embedding, strategy.regularizer("embedding_dropout", "p"), encoder, addons, dropout, num_classes)
