"""The sequence tagger assembled from a sampled strategy (BiLSTM-CRF and its variants), and its loss.

words [B, T] (+ characters [B, T, L]) -> word embedding (+ character encoder) -> embedding dropout
-> encoder -> add-ons -> dropout -> emissions [B, T, K] -> softmax or CRF head.
The loss of either head is the NER task's (`trainables.ner`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spaces import Strategy
from spaces.addons import ADDONS
from spaces.encoders import ENCODERS
from trainables.crf import CRF, transition_constraints
from trainables.models import TokenDropout, build_char_encoder, random_word_embedding, word_and_char_features


class Tagger(nn.Module):
    def __init__(
        self,
        word_embedding: nn.Embedding,
        char_encoder: nn.Module | None,
        embedding_dropout: float,
        encoder: nn.Module,
        addons: list[nn.Module],
        dropout: float,
        num_tags: int,
        crf: CRF | None,
    ) -> None:
        super().__init__()
        self.word_embedding = word_embedding
        self.char_encoder = char_encoder
        self.embedding_dropout = TokenDropout(embedding_dropout)
        self.encoder = encoder
        self.addons = nn.ModuleList(addons)
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(encoder.output_dim, num_tags)
        self.crf = crf

    def emissions(self, words: torch.Tensor, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = word_and_char_features(self.word_embedding, self.char_encoder, words, chars)
        x = self.encoder(self.embedding_dropout(x), mask)
        for addon in self.addons:
            x = addon(x, mask)
        return self.projection(self.dropout(x))

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best tag ids [B, T]: constrained Viterbi under a CRF, per-token argmax otherwise."""
        if self.crf is not None:
            return self.crf.decode(emissions, mask)
        return emissions.argmax(dim=-1).masked_fill(~mask, 0)


# The output layer of each head: none (a softmax over the emissions) or a CRF.
_HEAD_LAYERS: dict[str, type[CRF] | None] = {"softmax": None, "crf": CRF}


def build_tagger(strategy: Strategy, num_words: int, num_chars: int, tags: Sequence[str], scheme: str) -> Tagger:
    dropout = strategy.regularizer("dropout", "p")
    word_embedding = random_word_embedding(num_words, strategy.embedding_dim)
    char_encoder, char_dim = build_char_encoder(strategy, num_chars)
    encoder_name, encoder_params = strategy.encoder
    encoder = ENCODERS[encoder_name].build(strategy.embedding_dim + char_dim, dropout=dropout, **encoder_params)
    addons = [
        ADDONS[name].build(encoder.output_dim, dropout=dropout, **strategy.addons[name])
        for name in ADDONS.names()
        if name in strategy.addons
    ]
    head_layer = _HEAD_LAYERS[strategy.choice("head")[0]]
    crf = head_layer(len(tags), transition_constraints(tags, scheme)) if head_layer is not None else None
    return Tagger(word_embedding, char_encoder, strategy.regularizer("embedding_dropout", "p"), encoder, addons, dropout, len(tags), crf)
