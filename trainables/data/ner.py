"""NER data: load a token-tagging dataset (CoNLL-style files or the hub) and encode it into compact arrays.

The search driver calls `load_ner` once; the result, a `NerData` (ragged int32 word, character and
tag ids, the vocabularies and the tag names), is shipped to every trial, so trials never touch the
files or the `datasets` cache.

Two steps, usable separately:

* `load_ner_splits` finds the data (CoNLL files under a data root, else the Hugging Face hub),
  reads it through `datasets` and returns a `DatasetDict` with columns "tokens" and "tags" (tags
  already converted to the spec's target scheme), carving a missing validation split out of train.
* `encode_ner` builds the word and character vocabularies and the tag set from the training split
  only and packs every split into an `EncodedSentences`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainables._lazy import lazy_import
from trainables.data.common import (
    SPLIT_NAMES,
    UNK_ID,
    CharVocabulary,
    DataError,
    build_vocab,
    carve_missing,
    char_codes,
    read_local_or_hub,
    select_hub_splits,
)
from trainables.data.conll import ConllSource, ner_features, read_conll_split
from trainables.data.section import Section, check_choice, check_minimum, check_sources, check_split_names
from trainables.data.subword_tags import SubwordNerData, encode_tagging
from trainables.data.subwords import add_subwords
from trainables.data.tag_schemes import SCHEMES, TARGET_SCHEMES, TagError, convert_scheme, parse_tag, tag_order_key

datasets = lazy_import("datasets")


@dataclass(frozen=True)
class HubNerSource:
    """A token-tagging dataset on the Hugging Face hub, read with `datasets.load_dataset(path, name)`.

    Attributes:
        path: Hub dataset id, e.g. "conll2003" or "wnut_17".
        name: Dataset config name, if the dataset has several.
        tokens_column: Column holding each sentence's tokens (a list of strings).
        tags_column: Column holding each sentence's tags: a list of ClassLabel ids (replaced by
            their names) or of tag strings.
        scheme: The hub tags' scheme: "iob1", "iob2" or "bioes".
        splits: Our split name -> hub split name; "train" is required. A hub split that does not
            exist is treated as missing (a missing validation split is carved from train).
    """

    path: str
    name: str | None = None
    tokens_column: str = "tokens"
    tags_column: str = "ner_tags"
    scheme: str = "iob2"
    splits: Mapping[str, str] = field(default_factory=lambda: {split: split for split in SPLIT_NAMES})

    def __post_init__(self) -> None:
        check_choice("scheme", self.scheme, SCHEMES)
        check_split_names("splits", self.splits)

    @classmethod
    def from_section(cls, section: Section) -> HubNerSource:
        """A NER study file's `data.hub` section."""
        section.check_keys(("path", "name", "tokens", "tags", "scheme", "splits"))
        return section.build(
            cls,
            path=section.string("path"),
            name=section.optional_string("name"),
            tokens_column=section.string("tokens", cls.tokens_column),
            tags_column=section.string("tags", cls.tags_column),
            scheme=section.string("scheme", cls.scheme),
            splits=section.string_map("splits") or {split: split for split in SPLIT_NAMES},
        )


@dataclass(frozen=True)
class NerDataSpec:
    """What to load and how to encode it.

    Attributes:
        name: Short dataset name for messages.
        hub: Where to find it on the hub (used when the local files are not available).
        local: Where to find it under the data root (preferred when all its files exist).
        scheme: The scheme the model is trained and evaluated in: "iob2" or "bioes"; the source
            tags are converted to it when loading.
        lowercase_words: Lowercase tokens for the word vocabulary (characters keep their case).
        min_freq: Word vocabulary keeps words seen at least this often in train; >= 1.
        max_vocab: Word vocabulary size cap, counting "<pad>" and "<unk>"; >= 3.
        max_word_length: Characters kept per token for the character encoder; >= 1.
        subword_max_length: Sub-words kept per sentence by a pretrained encoder's tokenizer (special
            tokens included); words beyond it are predicted "O"; >= 8.
        pretrained: Models to tokenize for (`trainables.data.subword_tags`); filled in by the engine
            from the space's `transformer` encoder, not read from the study file.
    """

    name: str
    hub: HubNerSource | None = None
    local: ConllSource | None = None
    scheme: str = "iob2"
    lowercase_words: bool = True
    min_freq: int = 1
    max_vocab: int = 100_000
    max_word_length: int = 30
    subword_max_length: int = 256
    pretrained: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_sources(self.hub, self.local, "a dataset needs `hub` (a hub dataset name) or `local` (files under the data root), or both")
        check_choice("scheme", self.scheme, TARGET_SCHEMES)
        check_minimum("min_freq", self.min_freq, 1)
        check_minimum("max_vocab", self.max_vocab, 3)
        check_minimum("max_word_length", self.max_word_length, 1)
        check_minimum("subword_max_length", self.subword_max_length, 8)

    @classmethod
    def from_section(cls, section: Section) -> NerDataSpec:
        """The `data:` section of a NER study file."""
        section.check_keys(("name", "hub", "local", "scheme", "lowercase_words", "min_freq", "max_vocab", "max_word_length", "subword_max_length"))
        hub = section.section("hub", required=False)
        local = section.section("local", required=False)
        return section.build(
            cls,
            name=section.string("name", "dataset"),
            hub=HubNerSource.from_section(hub) if hub is not None else None,
            local=ConllSource.from_section(local) if local is not None else None,
            scheme=section.string("scheme", cls.scheme),
            lowercase_words=section.boolean("lowercase_words", cls.lowercase_words),
            min_freq=section.integer("min_freq", cls.min_freq),
            max_vocab=section.integer("max_vocab", cls.max_vocab),
            max_word_length=section.integer("max_word_length", cls.max_word_length),
            subword_max_length=section.integer("subword_max_length", cls.subword_max_length),
        )


# eq=False: the generated __eq__ would compare numpy arrays, whose truth value is ambiguous.
@dataclass(frozen=True, eq=False)
class EncodedSentences:
    """One split's sentences, stored ragged (no padding).

    Attributes:
        words: int32, every token's word id, sentences concatenated.
        offsets: int64, shape (N+1,); sentence i is words[offsets[i]:offsets[i+1]] (>= 1 token).
        chars: int32, every token's character ids (its first `max_word_length` characters),
            tokens concatenated.
        char_offsets: int64, shape (total_tokens+1,); token j is chars[char_offsets[j]:char_offsets[j+1]]
            (>= 1 character; an empty token is a single "<unk>").
        tags: int32, tag ids aligned with `words`, indices into `NerData.tags`.
    """

    words: np.ndarray
    offsets: np.ndarray
    chars: np.ndarray
    char_offsets: np.ndarray
    tags: np.ndarray

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def lengths(self) -> np.ndarray:
        """Tokens per sentence, int64 of shape (N,)."""
        return np.diff(self.offsets)


@dataclass(frozen=True, eq=False)
class NerData:
    """An encoded NER dataset, ready to ship to trials.

    Attributes:
        train: Training split.
        validation: Validation split (the one trials report on).
        test: Test split, or None when the dataset has none.
        words: Word strings by id (lowercased when the spec says so); 0 is "<pad>", 1 is "<unk>".
        chars: Characters by id; 0 is "<pad>", 1 is "<unk>".
        tags: Tag names in the target scheme, as seen in train: "O" first, then by entity type,
            then by prefix in entity order (B, I, E, S).
        scheme: The target scheme ("iob2" or "bioes").
        source: One line for the user saying where the data was read from.
        subwords: Pretrained model name -> the same sentences in that model's sub-words.
    """

    train: EncodedSentences
    validation: EncodedSentences
    test: EncodedSentences | None
    words: list[str]
    chars: list[str]
    tags: list[str]
    scheme: str
    source: str
    subwords: Mapping[str, SubwordNerData] = field(default_factory=dict)

    def tag_names(self, ids: Iterable[int]) -> list[str]:
        """Tag names of a sequence of tag ids (ints or a numpy array)."""
        return [self.tags[int(index)] for index in ids]


# --------------------------------------------------------------------------------------------
# Loading


def load_ner_splits(spec: NerDataSpec, data_root: str | os.PathLike | None, seed: int) -> tuple[datasets.DatasetDict, str]:
    """Read the dataset's splits, from local CoNLL files when available, else from the hub.

    Local files are used when every file of `spec.local` exists (relative paths are resolved
    against the data root: `data_root`, else the SEARCH_DATA_ROOT environment variable); they are
    read through `datasets` (cached by file size and mtime). Otherwise `spec.hub` is loaded, after a
    quick reachability probe. Tags are converted to `spec.scheme`. A missing validation split is
    carved from train (10%, with `seed`).

    Args:
        spec: What to load.
        data_root: Directory the local paths are relative to; None to use SEARCH_DATA_ROOT.
        seed: Seed for carving validation out of train.

    Returns:
        A DatasetDict with "train", "validation" and, when available, "test", each with columns
        "tokens" and "tags" (lists of strings, tags in the target scheme); and a one-line
        description of where the data came from.

    Raises:
        DataError: The data could not be found or read, or a line or tag is malformed.
    """
    local, hub = spec.local, spec.hub

    def read_local(paths: dict[str, Path]) -> tuple[dict[str, datasets.Dataset], str]:
        assert local is not None
        splits = {split: read_conll_split(local, path, spec.scheme) for split, path in paths.items()}
        return splits, _scheme_note(local.scheme, spec.scheme)

    def read_hub(loaded: datasets.DatasetDict) -> tuple[dict[str, datasets.Dataset], str]:
        assert hub is not None
        notes: list[str] = []

        def prepare(ours: str, theirs: str, dataset: datasets.Dataset) -> datasets.Dataset:
            where = f"hub dataset {hub.path}, split {theirs}"
            normalized = _normalize_hub_split(dataset, hub, spec.scheme, where)
            dropped = len(dataset) - len(normalized)
            if dropped:
                notes.append(f"{dropped} empty sentences dropped from {theirs}")
            if len(normalized) == 0:
                raise DataError(f"{where}: no sentences")
            return normalized

        splits = select_hub_splits(hub, loaded, prepare)
        return splits, _scheme_note(hub.scheme, spec.scheme) + "".join(f"; {note}" for note in notes)

    splits, source = read_local_or_hub(spec.name, local, hub, data_root, local_format="CoNLL", read_local=read_local, read_hub=read_hub)
    splits, notes = carve_missing(splits, {}, seed, spec.name)
    if notes:
        source += "; " + "; ".join(notes)
    return datasets.DatasetDict(splits), source


def _scheme_note(source: str, target: str) -> str:
    return f"; tags {source} -> {target}" if source != target else f"; tags {target}"


def _normalize_hub_split(dataset: datasets.Dataset, hub: HubNerSource, target: str, where: str) -> datasets.Dataset:
    """Columns "tokens"/"tags" as strings, ClassLabel ids named, tags in `target`, empty sentences dropped."""
    for role, column in (("tokens", hub.tokens_column), ("tags", hub.tags_column)):
        if column not in dataset.column_names:
            raise DataError(f"{where}: no {role} column {column!r}; the columns are: {', '.join(dataset.column_names)}")
    inner = getattr(dataset.features[hub.tags_column], "feature", None)
    names = inner.names if isinstance(inner, datasets.ClassLabel) else None

    def tag_name(value: Any, row: int) -> str:
        if names is None:
            if not isinstance(value, str):
                raise DataError(f"{where}, row {row}: tag {value!r} is not a string and the column has no ClassLabel names")
            return value
        if not isinstance(value, int) or not 0 <= value < len(names):
            raise DataError(f"{where}, row {row}: tag id {value!r} is not one of the {len(names)} ClassLabel ids")
        return names[value]

    def convert(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        tokens_out: list[list[str]] = []
        tags_out: list[list[str]] = []
        for row, tokens, tags in zip(indices, batch[hub.tokens_column], batch[hub.tags_column]):
            tokens, tags = tokens or [], tags or []
            if len(tokens) != len(tags):
                raise DataError(f"{where}, row {row}: {len(tokens)} tokens but {len(tags)} tags")
            if not tokens:
                continue  # an empty sentence has nothing to tag
            try:
                converted = convert_scheme([tag_name(tag, row) for tag in tags], hub.scheme, target)
            except TagError as error:
                raise DataError(f"{where}, row {row}: {error}") from None
            tokens_out.append(["" if token is None else str(token) for token in tokens])
            tags_out.append(converted)
        return {"tokens": tokens_out, "tags": tags_out}

    return dataset.map(
        convert,
        with_indices=True,
        batched=True,
        remove_columns=dataset.column_names,
        features=ner_features(),
        desc="Reading",
    )


# --------------------------------------------------------------------------------------------
# Encoding


def _flat_column(dataset: datasets.Dataset, name: str, where: str) -> tuple[list[str], np.ndarray]:
    """(all items of a list-of-strings column, concatenated; items per row) via Arrow."""
    # Imported here, not at the top: Ray workers unpickle `NerData` from this module and must not
    # pay for pyarrow (see trainables/_lazy.py).
    import pyarrow as pa
    import pyarrow.compute as pc

    # Through the Arrow table (honouring any indices mapping left by a carve): no per-row Python.
    column = dataset.with_format("arrow")[name]
    if column.null_count:
        raise DataError(f"{where}: {column.null_count} rows have no {name!r}")
    lengths = pc.list_value_length(column).to_numpy().astype(np.int64)
    flat = pc.list_flatten(column)
    if flat.null_count:
        flat = pc.fill_null(flat, pa.scalar("", flat.type))
    return flat.to_pylist(), lengths


def _encode_split(
    tokens: list[str],
    lengths: np.ndarray,
    tags: list[str],
    word_ids: Mapping[str, int],
    chars: CharVocabulary,
    tag_ids: Mapping[str, int],
    spec: NerDataSpec,
    where: str,
) -> EncodedSentences:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    lookup = word_ids.get
    words = [token.lower() for token in tokens] if spec.lowercase_words else tokens
    word_array = np.fromiter((lookup(word, UNK_ID) for word in words), dtype=np.int32, count=len(words))

    codes, char_lengths = char_codes(tokens, spec.max_word_length)
    char_array = chars.lookup(codes)
    empty = np.flatnonzero(char_lengths == 0)
    if len(empty):  # an empty token still gets one character, "<unk>"
        starts = np.zeros(len(char_lengths), dtype=np.int64)
        np.cumsum(char_lengths[:-1], out=starts[1:])
        char_array = np.insert(char_array, starts[empty], UNK_ID).astype(np.int32)
        char_lengths[empty] = 1
    char_offsets = np.zeros(len(char_lengths) + 1, dtype=np.int64)
    np.cumsum(char_lengths, out=char_offsets[1:])

    unknown = sorted(set(tags) - set(tag_ids), key=tag_order_key)
    if unknown:
        raise DataError(
            f"{where} split has tags not seen in train: {', '.join(map(repr, unknown[:10]))} (train tags: {', '.join(tag_ids)})"
        )
    tag_array = np.fromiter((tag_ids[tag] for tag in tags), dtype=np.int32, count=len(tags))
    return EncodedSentences(words=word_array, offsets=offsets, chars=char_array, char_offsets=char_offsets, tags=tag_array)


def encode_ner(splits: datasets.DatasetDict | Mapping[str, datasets.Dataset], spec: NerDataSpec, source: str = "") -> NerData:
    """Pack every split into arrays, with vocabularies and tag set from the training split only.

    The word vocabulary counts the training tokens (lowercased when `spec.lowercase_words`), keeps
    those seen at least `spec.min_freq` times, most frequent first (ties by word), up to
    `spec.max_vocab` entries including "<pad>" and "<unk>". The character vocabulary holds every
    character of the training tokens' first `spec.max_word_length` characters, most frequent
    first (ties by code point). Words and characters not in them become "<unk>".

    Args:
        splits: "train", "validation" and optionally "test", with columns "tokens" and "tags"
            (lists of strings, tags in `spec.scheme`), as `load_ner_splits` returns them.
        spec: Vocabulary and scheme settings.
        source: Where the data came from, kept for messages.

    Returns:
        The encoded dataset.

    Raises:
        DataError: A required split is missing, train is empty, a sentence is empty or its tokens
            and tags differ in number, a train tag does not fit `spec.scheme`, or a
            validation/test tag does not occur in train.
    """
    for required in ("train", "validation"):
        if required not in splits:
            raise DataError(f"dataset {spec.name!r}: no {required} split (have: {', '.join(splits)})")
    columns: dict[str, tuple[list[str], np.ndarray, list[str]]] = {}
    for split in SPLIT_NAMES:
        if split not in splits:
            continue
        where = f"dataset {spec.name!r}: {split}"
        tokens, lengths = _flat_column(splits[split], "tokens", where)
        tags, tag_lengths = _flat_column(splits[split], "tags", where)
        mismatched = np.flatnonzero(lengths != tag_lengths)
        if len(mismatched):
            row = int(mismatched[0])
            raise DataError(f"{where}: sentence {row} has {lengths[row]} tokens but {tag_lengths[row]} tags")
        empty = np.flatnonzero(lengths == 0)
        if len(empty):
            raise DataError(f"{where}: {len(empty)} sentences have no tokens (first at row {int(empty[0])})")
        columns[split] = (tokens, lengths, tags)
    train_tokens, _, train_tags = columns["train"]
    if not train_tokens:
        raise DataError(f"dataset {spec.name!r}: the train split is empty")

    counts = Counter(token.lower() for token in train_tokens) if spec.lowercase_words else Counter(train_tokens)
    words = build_vocab(counts, spec.min_freq, spec.max_vocab)
    word_ids = {word: index for index, word in enumerate(words)}
    chars = CharVocabulary(char_codes(train_tokens, spec.max_word_length)[0])
    tag_set = set(train_tags)
    for tag in tag_set:
        try:
            parse_tag(tag, spec.scheme)
        except TagError:
            raise DataError(f"dataset {spec.name!r}: train tag {tag!r} is not a {spec.scheme} tag") from None
    tags = sorted(tag_set, key=tag_order_key)
    tag_ids = {tag: index for index, tag in enumerate(tags)}

    encoded = {
        split: _encode_split(tokens, lengths, split_tags, word_ids, chars, tag_ids, spec, f"dataset {spec.name!r}: {split}")
        for split, (tokens, lengths, split_tags) in columns.items()
    }
    return NerData(
        train=encoded["train"],
        validation=encoded["validation"],
        test=encoded.get("test"),
        words=words,
        chars=chars.chars,
        tags=tags,
        scheme=spec.scheme,
        source=source,
    )


def load_ner(spec: NerDataSpec, data_root: str | os.PathLike | None = None, seed: int = 0) -> NerData:
    """Load (`load_ner_splits`) and encode (`encode_ner`) a NER dataset.

    Args:
        spec: What to load and how to encode it.
        data_root: Directory local paths are relative to; None to use SEARCH_DATA_ROOT.
        seed: Seed for carving a missing validation split out of train.

    Returns:
        The encoded dataset.

    Raises:
        DataError: The data could not be found, read or encoded.
    """
    splits, source = load_ner_splits(spec, data_root, seed)
    data = encode_ner(splits, spec, source)
    return add_subwords(data, spec.pretrained, lambda model: encode_tagging(splits, data, model, data_root, spec.subword_max_length))
