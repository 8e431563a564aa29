"""BiDAF (Seo et al. 2017) assembled from a sampled strategy, its span loss and batched span decoding.

context and question tokens -> word embedding (+ character encoder) -> embedding dropout
-> contextual encoder (shared by both) -> attention flow: similarity S[i, j] = w . [c_i; q_j; c_i * q_j],
context-to-query and query-to-context attention, G = [c; c2q; c * c2q; c * q2c]
-> modelling encoder over G -> add-ons (self-attention, LayerNorm) -> start scores from [G; M]
-> end encoder over M -> end scores from [G; M2].

The strategy's encoder (kind and size) builds the contextual, modelling and end layers. BiDAF's
highway layer over the embeddings is left out: the encoder families are what the search compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spaces import Strategy
from spaces.addons import ADDONS
from spaces.encoders import ENCODERS
from spaces.losses import GoldLogProb
from trainables.models import TokenDropout, build_char_encoder, random_word_embedding, word_and_char_features


@dataclass
class SpanScores:
    """Model outputs: start/end log-probabilities over context tokens [B, T] (float32, padding at
    -inf-like), and pooled question and context encodings [B, D] for contrastive terms."""

    start_log_p: torch.Tensor
    end_log_p: torch.Tensor
    question_vector: torch.Tensor
    context_vector: torch.Tensor


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def _masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # finfo.min rather than -inf: a padded position must not turn a gradient into nan.
    logits = logits.float().masked_fill(~mask, torch.finfo(torch.float32).min)
    return torch.log_softmax(logits, dim=-1)


class BiDAF(nn.Module):
    def __init__(
        self,
        word_embedding: nn.Embedding,
        char_encoder: nn.Module | None,
        embedding_dropout: float,
        contextual: nn.Module,
        modelling: nn.Module,
        addons: list[nn.Module],
        end_encoder: nn.Module,
        dropout: float,
    ) -> None:
        super().__init__()
        self.word_embedding = word_embedding
        self.char_encoder = char_encoder
        self.embedding_dropout = TokenDropout(embedding_dropout)
        self.contextual = contextual
        self.modelling = modelling
        self.addons = nn.ModuleList(addons)
        self.end_encoder = end_encoder
        self.dropout = nn.Dropout(dropout)
        d = contextual.output_dim
        # The trilinear similarity w . [c; q; c * q], split so that no [B, T, J, 3d] tensor is built.
        self.similarity_context = nn.Linear(d, 1)
        self.similarity_question = nn.Linear(d, 1, bias=False)
        self.similarity_product = nn.Parameter(torch.empty(d).uniform_(-(d ** -0.5), d ** -0.5))
        self.start = nn.Linear(4 * d + modelling.output_dim, 1)
        self.end = nn.Linear(4 * d + end_encoder.output_dim, 1)

    def embed(self, words: torch.Tensor, chars: torch.Tensor) -> torch.Tensor:
        return self.embedding_dropout(word_and_char_features(self.word_embedding, self.char_encoder, words, chars))

    def forward(
        self,
        context_words: torch.Tensor,
        context_chars: torch.Tensor,
        context_mask: torch.Tensor,
        question_words: torch.Tensor,
        question_chars: torch.Tensor,
        question_mask: torch.Tensor,
    ) -> SpanScores:
        c = self.contextual(self.embed(context_words, context_chars), context_mask)  # [B, T, d]
        q = self.contextual(self.embed(question_words, question_chars), question_mask)  # [B, J, d]
        c, q = self.dropout(c), self.dropout(q)

        similarity = (
            self.similarity_context(c)
            + self.similarity_question(q).transpose(1, 2)
            + torch.bmm(c * self.similarity_product, q.transpose(1, 2))
        )  # [B, T, J]
        low = torch.finfo(similarity.dtype).min
        # Context-to-query: each context word attends over the question's words.
        c2q = torch.bmm(torch.softmax(similarity.masked_fill(~question_mask.unsqueeze(1), low), dim=-1), q)
        # Query-to-context: the context words most similar to any question word, one vector per example.
        best = similarity.masked_fill(~question_mask.unsqueeze(1), low).max(dim=-1).values.masked_fill(~context_mask, low)
        q2c = torch.bmm(torch.softmax(best, dim=-1).unsqueeze(1), c)  # [B, 1, d]
        g = torch.cat([c, c2q, c * c2q, c * q2c], dim=-1)  # [B, T, 4d]

        m = self.modelling(g, context_mask)
        for addon in self.addons:
            m = addon(m, context_mask)
        m = self.dropout(m)
        start_logits = self.start(torch.cat([g, m], dim=-1)).squeeze(-1)
        m2 = self.dropout(self.end_encoder(m, context_mask))
        end_logits = self.end(torch.cat([g, m2], dim=-1)).squeeze(-1)
        return SpanScores(
            _masked_log_softmax(start_logits, context_mask),
            _masked_log_softmax(end_logits, context_mask),
            _masked_mean(q, question_mask),
            _masked_mean(c, context_mask),
        )


def build_bidaf(strategy: Strategy, num_words: int, num_chars: int) -> BiDAF:
    dropout = strategy.regularizer("dropout", "p")
    word_embedding = random_word_embedding(num_words, strategy.embedding_dim)
    char_encoder, char_dim = build_char_encoder(strategy, num_chars)
    input_dim = strategy.embedding_dim + char_dim
    encoder_name, encoder_params = strategy.encoder
    build_encoder = ENCODERS[encoder_name].build
    contextual = build_encoder(input_dim, dropout=dropout, **encoder_params)
    modelling = build_encoder(4 * contextual.output_dim, dropout=dropout, **encoder_params)
    addons = [
        ADDONS[name].build(modelling.output_dim, dropout=dropout, **strategy.addons[name])
        for name in ADDONS.names()
        if name in strategy.addons
    ]
    end_encoder = build_encoder(modelling.output_dim, dropout=dropout, **encoder_params)
    return BiDAF(word_embedding, char_encoder, strategy.regularizer("embedding_dropout", "p"), contextual, modelling, addons, end_encoder, dropout)


def span_log_probs(scores: SpanScores, start: torch.Tensor, end: torch.Tensor, mask: torch.Tensor) -> GoldLogProb:
    """The start and end positions as a loss sees them (rows with a gold span, start >= 0, count):
    log p(gold start) and log p(gold end) as 2B examples, and for label smoothing the mean NLL of
    a uniform target over each context's real tokens (never over padding)."""
    valid = (start >= 0).repeat(2)
    log_p = torch.stack([scores.start_log_p, scores.end_log_p])  # [2, B, T]
    gold = torch.stack([start, end]).clamp(min=0).unsqueeze(-1)

    def uniform_nll() -> torch.Tensor:
        rows = valid.float()
        uniform = -torch.where(mask, log_p, 0.0).sum(dim=-1).reshape(-1) / mask.sum(dim=-1).repeat(2)
        return (uniform * rows).sum() / rows.sum().clamp(min=1)

    return GoldLogProb(log_p.gather(2, gold).squeeze(-1).reshape(-1), uniform_nll, valid)


@torch.no_grad()
def best_spans(start_log_p: torch.Tensor, end_log_p: torch.Tensor, mask: torch.Tensor, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best span per row: argmax of start_log_p[i] + end_log_p[j] over i <= j < i + max_length,
    both real tokens. Batched: scores of every (start, length) pair in one [B, T, K] tensor.
    Ties go to the earliest start, then the shortest span. Returns (starts, ends), each [B]."""
    batch, length = start_log_p.shape
    width = min(max_length, length)
    minus_inf = torch.tensor(float("-inf"), device=start_log_p.device)
    start = torch.where(mask, start_log_p.float(), minus_inf)
    end = torch.where(mask, end_log_p.float(), minus_inf)
    # band[b, i, k] = end[b, i + k]: padded on the right so every start has `width` candidates.
    band = F.pad(end, (0, width - 1), value=float("-inf")).unfold(1, width, 1)
    best = (start.unsqueeze(-1) + band).reshape(batch, -1).argmax(dim=-1)
    starts = torch.div(best, width, rounding_mode="floor")
    return starts, starts + best % width
