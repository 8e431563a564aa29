"""NER for pretrained encoders: word tags aligned to sub-words, and predictions back to words.

Each word's tag goes to its first sub-token; the word's other sub-tokens carry no label (the
model's word-level outputs are read at first sub-tokens only). A word left without any sub-token
(cut by `subword_max_length`, or one the tokenizer drops) is predicted "O", so every sentence
keeps its word count and is scored on all its words against the gold tags.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainables.data.common import column
from trainables.data.subwords import (
    PretrainedModel,
    cached_arrays,
    fingerprint,
    length_grouped_batches,
    pad_rows,
    pretrained_model,
    ragged,
    sorted_batches,
    tokenizer_fingerprint,
)

IGNORE_INDEX = -100  # as spaces.losses.IGNORE_INDEX: a position without a label


def first_subtokens(word_ids: Sequence[int | None], word_count: int) -> np.ndarray:
    """Each word's first sub-token position (a tokenizer's `word_ids()`), -1 for a word with none."""
    first = np.full(word_count, -1, dtype=np.int32)
    for position, word in enumerate(word_ids):
        if word is not None and first[word] < 0:
            first[word] = position
    return first


def subtoken_labels(first: np.ndarray, word_tags: np.ndarray, length: int) -> np.ndarray:
    """Sub-token labels of one sentence: each word's tag at its first sub-token, IGNORE_INDEX elsewhere."""
    labels = np.full(length, IGNORE_INDEX, dtype=np.int64)
    kept = first >= 0
    labels[first[kept]] = word_tags[kept]
    return labels


def word_predictions(kept_predictions: np.ndarray, first: np.ndarray, fill: int) -> np.ndarray:
    """A sentence's predictions for its words that have a sub-token, in word order, spread back
    over all its words: `fill` (the "O" tag) for the others. One prediction per word."""
    predicted = np.full(len(first), fill, dtype=np.int64)
    predicted[first >= 0] = kept_predictions[: int((first >= 0).sum())]
    return predicted


@dataclass(frozen=True, eq=False)
class SubwordSentences:
    """One split as a pretrained model reads it.

    Attributes:
        ids: int32 sub-token ids, sentences concatenated; sentence i is ids[id_offsets[i]:id_offsets[i+1]].
        id_offsets: int64, shape (N+1,).
        first: int32, one per word: its first sub-token's position in the sentence, -1 if none.
        word_offsets: int64, shape (N+1,); sentence i's words are first[word_offsets[i]:word_offsets[i+1]].
        tags: int32, one per word, the gold tag ids (as `NerData.tags`).
    """

    ids: np.ndarray
    id_offsets: np.ndarray
    first: np.ndarray
    word_offsets: np.ndarray
    tags: np.ndarray

    def __len__(self) -> int:
        return len(self.id_offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.id_offsets)

    def sentence(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(first sub-token of each word, gold tags) of sentence `index`."""
        words = slice(self.word_offsets[index], self.word_offsets[index + 1])
        return self.first[words], self.tags[words]


@dataclass(frozen=True)
class SubwordNerData:
    """A NER dataset as one pretrained model reads it (the same sentences, words and tags)."""

    train: SubwordSentences
    validation: SubwordSentences
    test: SubwordSentences | None
    tags: list[str]
    scheme: str
    model: PretrainedModel
    source: str

    @property
    def outside(self) -> int:
        """The tag predicted for a word the model does not see ("O")."""
        return self.tags.index("O") if "O" in self.tags else 0


def word_tokenizer(tokenizer: Any, model: PretrainedModel) -> Any:
    """A tokenizer that takes words: byte-level BPE ones (RoBERTa) need a space before each word."""
    if getattr(tokenizer, "add_prefix_space", None) is False:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model.location, add_prefix_space=True)
    return tokenizer


def encode_tagging(splits: Any, encoded: Any, model_name: str, data_root: str | os.PathLike | None, max_length: int) -> tuple[SubwordNerData, str]:
    """Every split's sentences (the `tokens` column) tokenized by `model_name`, at most `max_length`
    sub-tokens each; word tags from `encoded` (a `NerData`). Returns the data and a note."""
    model, tokenizer = pretrained_model(model_name, data_root)
    tokenizer = word_tokenizer(tokenizer, model)
    words = {split: column(dataset, "tokens") for split, dataset in splits.items()}
    key = fingerprint(tokenizer_fingerprint(tokenizer), max_length, words)

    def build() -> dict[str, np.ndarray]:
        arrays = {}
        for split, sentences in words.items():
            batch = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
            arrays[f"{split}.ids"], arrays[f"{split}.offsets"] = ragged(batch["input_ids"])
            arrays[f"{split}.first"] = np.concatenate(
                [first_subtokens(batch.word_ids(i), len(sentence)) for i, sentence in enumerate(sentences)] or [np.zeros(0, np.int32)])
        return arrays

    arrays, from_cache = cached_arrays("tagging", key, build)
    sentences = {}
    for split in words:
        word_split = getattr(encoded, split)
        sentences[split] = SubwordSentences(arrays[f"{split}.ids"], arrays[f"{split}.offsets"], arrays[f"{split}.first"], word_split.offsets, word_split.tags)
    data = SubwordNerData(sentences["train"], sentences["validation"], sentences.get("test"), encoded.tags, encoded.scheme, model, f"{model_name} sub-words")
    unseen = {split: int((s.first < 0).sum()) for split, s in sentences.items()}
    cut = ", ".join(f"{split} {count}" for split, count in unseen.items() if count)
    note = (f"{model_name}: {'cached sub-words' if from_cache else 'tokenized'} (train mean {float(np.mean(data.train.lengths())):.1f} "
            f"sub-words, max {max_length}" + (f"; words beyond it, predicted O: {cut}" if cut else "") + ")")
    return data, note


@dataclass
class TagArrays:
    """One batch as arrays: sub-tokens [B, S] and their mask, each sentence's words that have a
    sub-token in word order (their first sub-token `positions` [B, W], `tags`, `mask`)."""

    index: np.ndarray
    ids: np.ndarray
    subword_mask: np.ndarray
    positions: np.ndarray
    tags: np.ndarray
    mask: np.ndarray


def tag_batches(split: SubwordSentences, pad: int, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[TagArrays]:
    """Batches padded to their own longest sentence: grouped by length and shuffled with `rng`,
    else (evaluation) in order of length."""
    lengths = split.lengths()
    order = length_grouped_batches(lengths, batch_size, rng) if rng is not None else sorted_batches(lengths, batch_size)
    for index in order:
        ids, subword_mask = pad_rows(split.ids, split.id_offsets, index, pad)
        rows = [split.sentence(int(i)) for i in index]
        width = max(int((first >= 0).sum()) for first, _ in rows) or 1
        positions = np.zeros((len(index), width), dtype=np.int64)
        tags = np.full((len(index), width), IGNORE_INDEX, dtype=np.int64)
        for row, (first, gold) in enumerate(rows):
            kept = first >= 0
            positions[row, :kept.sum()] = first[kept]
            tags[row, :kept.sum()] = gold[kept]
        yield TagArrays(index, ids, subword_mask, positions, tags, tags != IGNORE_INDEX)
