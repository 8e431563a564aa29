"""Tests for trainables.data.common: hub split selection, carve fractions and vocabularies."""

from __future__ import annotations

from collections import Counter

import datasets
import numpy as np
import pytest

from trainables.data import DataError, HubSource
from trainables.data.common import CharVocabulary, build_vocab, char_codes, fractions_to_carve, select_hub_splits


def test_hub_split_selection_skips_missing_or_refused_splits_but_never_train() -> None:
    rows = datasets.Dataset.from_dict({"text": ["a", "b"]})
    loaded = datasets.DatasetDict({"train": rows, "test": rows})
    hub = HubSource("x/y", splits={"train": "train", "validation": "dev", "test": "test"})

    selected = select_hub_splits(hub, loaded, lambda ours, theirs, dataset: None if ours == "test" else dataset)
    assert list(selected) == ["train"]  # no "dev" on the hub; test refused by `prepare`

    with pytest.raises(DataError, match="hub dataset x/y has no split 'train'; it has: test"):
        select_hub_splits(hub, datasets.DatasetDict({"test": rows}), lambda ours, theirs, dataset: dataset)


def test_carve_fractions_default_validation_and_put_test_first() -> None:
    assert fractions_to_carve(["train"], {"validation": 0.2, "test": 0.1}) == {"test": 0.1, "validation": 0.2}
    assert list(fractions_to_carve(["train"], {"validation": 0.2, "test": 0.1})) == ["test", "validation"]
    assert fractions_to_carve(["train", "test"], {}) == {"validation": 0.1}
    assert fractions_to_carve(["train", "validation"], {}) == {}


def test_vocabulary_ranks_by_count_then_token_and_caps_with_pad_and_unk() -> None:
    counts = Counter({"b": 3, "a": 3, "c": 1, "d": 2})
    assert build_vocab(counts, min_freq=1, max_vocab=10) == ["<pad>", "<unk>", "a", "b", "d", "c"]
    assert build_vocab(counts, min_freq=2, max_vocab=4) == ["<pad>", "<unk>", "a", "b"]


def test_char_vocabulary_from_train_maps_unseen_characters_to_unk() -> None:
    codes, lengths = char_codes(["abca", "a", "", "Zé"], max_length=3)  # "abca" is cut to "abc"
    assert lengths.tolist() == [3, 1, 0, 2]
    chars = CharVocabulary(codes)
    assert chars.chars == ["<pad>", "<unk>", "a", "Z", "b", "c", "é"]  # most frequent first, ties by code point
    lookup = chars.lookup(char_codes(["ax"], max_length=5)[0])
    assert lookup.dtype == np.int32 and lookup.tolist() == [chars.chars.index("a"), 1]
