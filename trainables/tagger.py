"""The sequence tagger assembled from a sampled strategy (BiLSTM-CRF and its variants), and its loss.

words [B, T] (+ characters [B, T, L]) -> word embedding (+ character encoder) -> embedding dropout
-> encoder -> add-ons -> dropout -> emissions [B, T, K] -> softmax or CRF head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from spaces._space import Strategy
from spaces.addons import ADDONS
from spaces.char_encoders import CHAR_ENCODERS
from spaces.encoders import ENCODERS
from trainables.crf import CRF, transition_constraints
from trainables.models import TokenDropout, random_word_embedding, word_and_char_features


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


def build_tagger(strategy: Strategy, num_words: int, num_chars: int, tags: Sequence[str], scheme: str) -> Tagger:
    dropout = strategy.regularizer("dropout", "p")
    word_embedding = random_word_embedding(num_words, strategy.embedding_dim)
    char_name, char_params = strategy.choice("char_encoder")
    char_encoder = CHAR_ENCODERS[char_name].build(num_chars, **char_params) if char_name != "none" else None
    input_dim = strategy.embedding_dim + (char_encoder.output_dim if char_encoder is not None else 0)
    encoder_name, encoder_params = strategy.encoder
    encoder = ENCODERS[encoder_name].build(input_dim, dropout=dropout, **encoder_params)
    addons = [
        ADDONS[name].build(encoder.output_dim, dropout=dropout, **strategy.addons[name])
        for name in ADDONS.names()
        if name in strategy.addons
    ]
    head, _ = strategy.choice("head")
    crf = CRF(len(tags), transition_constraints(tags, scheme)) if head == "crf" else None
    return Tagger(word_embedding, char_encoder, strategy.regularizer("embedding_dropout", "p"), encoder, addons, dropout, len(tags), crf)


def tagging_loss(
    model: Tagger,
    loss_fn: nn.Module,
    loss: tuple[str, dict[str, Any]],
    emissions: torch.Tensor,
    tags: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """The strategy's loss on one batch, per token for either head (so learning rates compare).

    softmax: the token-level loss over real tokens (padding tags are IGNORE_INDEX).
    crf: the loss family applied per sentence to log p(gold tags | sentence) (cross-entropy is the
    CRF negative log-likelihood; focal and GHM weigh sentences), scaled from per-sentence to
    per-token; label smoothing mixes the CRF NLL with uniform-target cross-entropy on emissions.
    """
    if model.crf is None:
        return loss_fn(emissions.reshape(-1, emissions.shape[-1]), tags.reshape(-1))
    tokens_per_sentence = mask.sum() / mask.shape[0]
    log_likelihood = model.crf.log_likelihood(emissions, tags, mask)
    name, params = loss
    if name == "label_smoothing":
        epsilon = params["epsilon"]
        uniform = -(torch.log_softmax(emissions.float(), dim=-1).mean(dim=-1) * mask).sum() / mask.sum()
        return (1 - epsilon) * (-log_likelihood.mean() / tokens_per_sentence) + epsilon * uniform
    return loss_fn.from_gold_log_prob(log_likelihood) / tokens_per_sentence
