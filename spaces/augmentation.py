"""Data augmentation of the training split, each kind switched on or off per trial (a toggle family).

Every kind draws anew each epoch from a generator seeded by the trial's seed and the epoch
(`epoch_rng`), apart from the shuffle's, so an epoch's augmented data is reproducible from the seed
and the epoch alone (a resumed trial redraws the same), and `probability` 0 trains as without it.
Each example is augmented with `probability`; the dev and test splits never are. The kinds act on
encoded word ids (no re-tokenization):

- eda: EDA without a thesaurus (Wei & Zou 2019): one of random swap, random deletion and random
  insertion of a token of the same example, drawn uniformly, applied max(1, round(rate x length))
  times (deletion keeps at least one token). Text classification.
- mixup: the pooled representation of an example is mixed with another example's of the batch,
  lambda x h_i + (1 - lambda) x h_j, one lambda ~ Beta(alpha, alpha) per batch (Zhang et al. 2018;
  on sentence encodings as in Guo et al. 2019); the loss mixes the labels with the same lambda,
  lambda x loss(y_i) + (1 - lambda) x loss(y_j) (for cross-entropy: the loss of the mixed label
  distribution). An example not drawn is its own partner, so it trains as before. Text classification.
- mention_replacement: each entity mention of the sentence, with probability `rate`, is replaced by
  a training-set mention of the same type (its words and characters), the tags rebuilt in the
  study's scheme (Dai & Adel 2020). NER.
- token_replacement: each token, with probability `rate`, is replaced by a training token carrying
  the same tag, drawn by frequency (label-wise token replacement, Dai & Adel 2020). NER.

A task offers what its word-level data has (`TOKENS`, `POOLED`, `TAGGED_TOKENS`); a pretrained
encoder's sub-words are offered none (a word's sub-tokens would be split up, and a tag sits at a
word's first sub-token), so the space refuses augmentation beside it. The family is opt-in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from spaces._base import Component, Float, between, positive, registry

TOKENS = "tokens"  # what a task offers: each example's word ids, one label per example
POOLED = "pooled"  # ... a pooled representation per example, before a classifier over its label
TAGGED_TOKENS = "tagged_tokens"  # ... word ids each with a tag, and the mentions the tags make


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator an epoch's augmentation draws from: the same for the same seed and epoch."""
    return np.random.default_rng([seed, epoch])


class ExampleAugmentation:
    """A kind that rewrites examples before batching; each example is drawn with `probability`."""

    per_batch = False

    def __init__(self, *, probability: float, rate: float) -> None:
        self.probability = probability
        self.rate = rate

    def chosen(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Which of `count` examples to augment (bool [count])."""
        return rng.random(count) < self.probability


class EDA(ExampleAugmentation):
    OPERATIONS = ("swap", "delete", "insert")

    def augment(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One example's word ids with one operation applied (a new array)."""
        changes = max(1, round(self.rate * len(ids)))
        operation = self.OPERATIONS[rng.integers(len(self.OPERATIONS))]
        ids = ids.copy()
        if operation == "swap":
            for _ in range(changes):
                i, j = rng.integers(len(ids), size=2)
                ids[i], ids[j] = ids[j], ids[i]
            return ids
        if operation == "delete":
            dropped = rng.choice(len(ids), size=min(changes, len(ids) - 1), replace=False)
            return np.delete(ids, dropped)
        for _ in range(changes):
            ids = np.insert(ids, rng.integers(len(ids) + 1), ids[rng.integers(len(ids))])
        return ids


class Mixup:
    per_batch = True

    def __init__(self, *, probability: float, alpha: float) -> None:
        self.probability = probability
        self.alpha = alpha

    def draw(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, float] | None:
        """(each example's partner, lambda) for a batch of `size`; None when no example is drawn.
        A drawn example's partner is a random example of the batch; the others are their own."""
        drawn = rng.random(size) < self.probability
        if not drawn.any():
            return None
        partner = np.arange(size)
        partner[drawn] = rng.permutation(size)[drawn]
        return partner, float(rng.beta(self.alpha, self.alpha))

    @staticmethod
    def mix(pooled: torch.Tensor, partner: torch.Tensor, weight: float) -> torch.Tensor:
        return weight * pooled + (1 - weight) * pooled[partner]

    @staticmethod
    def loss(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: torch.Tensor, labels: torch.Tensor,
             partner: torch.Tensor, weight: float) -> torch.Tensor:
        """The loss against labels mixed with the representations' weight."""
        return weight * loss(logits, labels) + (1 - weight) * loss(logits, labels[partner])


class MentionReplacement(ExampleAugmentation):
    def augment(
        self, positions: np.ndarray, mentions: Sequence[tuple[int, int, str]], pool: Mapping[str, Sequence[np.ndarray]],
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
        """A sentence as the training-set positions of its tokens, with its `mentions` (start, end,
        type; positions in the sentence) and the training mentions of each type (`pool`: their
        positions). Returns the new sentence's positions and mentions."""
        pieces, kept, at, cursor = [], [], 0, 0
        for start, end, kind in mentions:
            replaced = rng.random() < self.rate
            source = pool[kind][rng.integers(len(pool[kind]))] if replaced else positions[start:end]
            pieces += [positions[cursor:start], source]
            at += start - cursor
            kept.append((at, at + len(source), kind))
            at += len(source)
            cursor = end
        pieces.append(positions[cursor:])
        return np.concatenate(pieces), kept


class TokenReplacement(ExampleAugmentation):
    def augment(self, positions: np.ndarray, tags: np.ndarray, by_tag: Mapping[int, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """A sentence's training-set positions with each, with probability `rate`, replaced by the
        position of a random training token of the same tag (`by_tag`: tag id -> positions)."""
        positions = positions.copy()
        for i in np.flatnonzero(rng.random(len(positions)) < self.rate):
            same = by_tag[int(tags[i])]
            positions[i] = same[rng.integers(len(same))]
        return positions


def _probability() -> Float:
    return Float(0.05, 0.5, limits=between(0.0, 1.0), doc="the probability that an example is augmented")


AUGMENTATION = registry(
    "augmentation",
    "toggle",
    [
        Component("eda", {"probability": _probability(), "rate": Float(0.05, 0.3, limits=between(0.0, 1.0), doc="the fraction of an example's tokens EDA changes")},
                  EDA, "random swap, deletion or insertion of the example's own tokens (EDA, Wei & Zou 2019)", frozenset({TOKENS})),
        Component("mixup", {"probability": Float(0.1, 1.0, limits=between(0.0, 1.0), doc="the probability that an example is mixed"),
                            "alpha": Float(0.1, 0.4, limits=positive(), doc="the mixup Beta(alpha, alpha) parameter")},
                  Mixup, "mixup of pooled representations and labels (Zhang et al. 2018)", frozenset({POOLED})),
        Component("mention_replacement", {"probability": _probability(), "rate": Float(0.1, 1.0, limits=between(0.0, 1.0), doc="the probability that a mention is replaced")},
                  MentionReplacement, "mentions replaced by training mentions of the same type (Dai & Adel 2020)", frozenset({TAGGED_TOKENS})),
        Component("token_replacement", {"probability": _probability(), "rate": Float(0.05, 0.3, limits=between(0.0, 1.0), doc="the probability that a token is replaced")},
                  TokenReplacement, "tokens replaced by training tokens of the same tag (Dai & Adel 2020)", frozenset({TAGGED_TOKENS})),
    ],
    opt_in=True,
)
