"""NER augmentation on encoded sentences (`spaces.augmentation`: mention and label-wise token
replacement): a sentence is rewritten as the training-split positions of its tokens, so each token
brings its own word id and characters, and the tags are rebuilt in the data's scheme.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spaces.augmentation import MentionReplacement, TokenReplacement
from trainables.data.ner import EncodedSentences
from trainables.data.tag_schemes import convert_scheme, parse_tag


@dataclass(frozen=True)
class _TagSet:
    """Each tag id's entity type (index into `kinds`, -1 for O) and whether it opens a mention."""

    kinds: tuple[str, ...]
    kind_of: np.ndarray  # [tags]
    opens: np.ndarray  # [tags] bool: B- or S-
    closes: np.ndarray  # [tags] bool: E- or S- (the next token cannot continue it)
    ids: dict[str, int]

    @classmethod
    @functools.cache
    def of(cls, tags: tuple[str, ...], scheme: str) -> _TagSet:
        parsed = [parse_tag(tag, scheme) for tag in tags]
        kinds = tuple(sorted({kind for _, kind in parsed if kind is not None}))
        kind_of = np.array([kinds.index(kind) if kind is not None else -1 for _, kind in parsed], dtype=np.int64)
        opens = np.array([prefix in ("B", "S") for prefix, _ in parsed])
        closes = np.array([prefix in ("E", "S") for prefix, _ in parsed])
        return cls(kinds, kind_of, opens, closes, {tag: i for i, tag in enumerate(tags)})


def mention_spans(tags: np.ndarray, offsets: np.ndarray, tag_set: _TagSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, kind index) of every mention in `tags` (flat tag ids of sentences cut at
    `offsets`). A mention opens at B-/S-, or at an entity tag that does not continue the previous
    token's mention (as `convert_scheme` reads a stray I-)."""
    kind = tag_set.kind_of[tags]
    first = np.zeros(len(tags), dtype=bool)
    first[offsets[:-1]] = True
    previous_kind = np.where(first, -1, np.roll(kind, 1))
    previous_closed = np.where(first, True, np.roll(tag_set.closes[tags], 1))
    opens = (kind >= 0) & (tag_set.opens[tags] | (kind != previous_kind) | previous_closed)
    starts = np.flatnonzero(opens)
    # A non-opening entity token continues the mention just before it: mentions are contiguous runs.
    lengths = np.bincount(np.cumsum(opens)[kind >= 0] - 1, minlength=len(starts))
    return starts, starts + lengths, kind[starts]


@dataclass(frozen=True, eq=False)
class TrainingPools:
    """What the replacements draw from: the training mentions of each type, the training tokens of each tag."""

    mentions: dict[str, list[np.ndarray]]  # entity type -> positions of each of its mentions
    tokens: dict[int, np.ndarray]  # tag id -> positions of every token with it


@functools.lru_cache(maxsize=2)
def training_pools(split: EncodedSentences, tags: tuple[str, ...], scheme: str) -> TrainingPools:
    """Built once per trial process (the training split is the same object every epoch)."""
    tag_set = _TagSet.of(tags, scheme)
    starts, ends, kinds = mention_spans(split.tags, split.offsets, tag_set)
    mentions: dict[str, list[np.ndarray]] = {}
    for start, end, kind in zip(starts, ends, kinds):
        mentions.setdefault(tag_set.kinds[kind], []).append(np.arange(start, end))
    order = np.argsort(split.tags, kind="stable")
    counts = np.bincount(split.tags, minlength=len(tags))
    tokens = {tag: positions for tag, positions in enumerate(np.split(order, np.cumsum(counts)[:-1])) if len(positions)}
    return TrainingPools(mentions, tokens)


def rebuilt_tags(length: int, mentions: Sequence[tuple[int, int, str]], tag_set: _TagSet, scheme: str) -> np.ndarray:
    """Tag ids of a sentence of `length` tokens with `mentions` (start, end, type), in `scheme`."""
    iob2 = ["O"] * length
    for start, end, kind in mentions:
        iob2[start:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 1)
    return np.array([tag_set.ids[tag] for tag in convert_scheme(iob2, "iob2", scheme)], dtype=np.int64)


def augment_positions(
    split: EncodedSentences, tags: tuple[str, ...], scheme: str, augmenters: Sequence[Any], rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each sentence of the training `split` as (training positions of its tokens, tag ids),
    rewritten by `augmenters` in order."""
    tag_set = _TagSet.of(tags, scheme)
    pools = training_pools(split, tags, scheme)
    positions = [np.arange(start, end) for start, end in zip(split.offsets[:-1], split.offsets[1:])]
    sentence_tags = [split.tags[p].astype(np.int64) for p in positions]
    for augmenter in augmenters:
        for i in np.flatnonzero(augmenter.chosen(len(split), rng)):
            if isinstance(augmenter, MentionReplacement):
                starts, ends, kinds = mention_spans(sentence_tags[i], np.array([0, len(sentence_tags[i])]), tag_set)
                if not len(starts):
                    continue
                spans = [(int(s), int(e), tag_set.kinds[k]) for s, e, k in zip(starts, ends, kinds)]
                positions[i], spans = augmenter.augment(positions[i], spans, pools.mentions, rng)
                sentence_tags[i] = rebuilt_tags(len(positions[i]), spans, tag_set, scheme)
            elif isinstance(augmenter, TokenReplacement):
                positions[i] = augmenter.augment(positions[i], sentence_tags[i], pools.tokens, rng)
            else:
                raise TypeError(f"NER cannot apply {type(augmenter).__name__}")
    return positions, sentence_tags


def gathered(split: EncodedSentences, positions: Sequence[np.ndarray], tags: Sequence[np.ndarray]) -> EncodedSentences:
    """Sentences made of the tokens at `positions` in `split` (their words and characters), with `tags`."""
    flat = np.concatenate(positions)
    char_starts = split.char_offsets[flat]
    char_lengths = split.char_offsets[flat + 1] - char_starts
    char_offsets = np.concatenate([[0], np.cumsum(char_lengths)]).astype(split.char_offsets.dtype)
    chars = split.chars[np.repeat(char_starts - char_offsets[:-1], char_lengths) + np.arange(char_offsets[-1])]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in positions])]).astype(split.offsets.dtype)
    return EncodedSentences(split.words[flat], offsets, chars, char_offsets, np.concatenate(tags).astype(split.tags.dtype))


def augmented_sentences(split: EncodedSentences, tags: Sequence[str], scheme: str, augmenters: Sequence[Any], rng: np.random.Generator) -> EncodedSentences:
    """The training split for one epoch, rewritten by `augmenters` (`tags`: the tag names, in `scheme`)."""
    positions, sentence_tags = augment_positions(split, tuple(tags), scheme, augmenters, rng)
    return gathered(split, positions, sentence_tags)
