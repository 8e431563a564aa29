"""Text-classification data: load a dataset (hub or local files) and encode it into compact arrays.

The search driver calls `load_text_classification` once. The result, a `TextClassificationData`
(ragged int32 token ids, int64 labels, the vocabulary and the label names), is shipped to every
trial, so trials never touch the files, the tokenizer or the `datasets` cache.

Two steps, usable separately:

* `load_splits` finds the data (local files under a data root, else the Hugging Face hub), reads it
  through `datasets` and returns a `DatasetDict` with string columns "text" and "label", carving
  missing validation/test splits out of train.
* `encode` tokenizes, builds the vocabulary from the training split only and packs every split
  into an `EncodedSplit`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainables._lazy import lazy_import
from trainables.data.common import (
    SPLIT_NAMES,
    UNK_ID,
    DataError,
    build_vocab,
    carve_missing,
    column,
    read_local_or_hub,
    select_hub_splits,
)
from trainables.data.section import (
    FieldError,
    Section,
    check_carve,
    check_choice,
    check_max_examples,
    check_minimum,
    check_sources,
    check_split_names,
)
from trainables.data.subwords import SubwordClassificationData, add_subwords, encode_classification
from trainables.data.text_files import LOCAL_FORMATS, missing_label_rows, normalize_columns, read_text_files

datasets = lazy_import("datasets")

# `<br />` is how aclImdb (and the hub's imdb) mark paragraph breaks; it is markup, not words.
_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
# A word (letters/digits/underscore), optionally with one apostrophe suffix ("it's", "n't"), or a
# single punctuation character. Simple, language-agnostic enough for the benchmark corpora.
_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
_INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class HubSource:
    """A dataset on the Hugging Face hub, read with `datasets.load_dataset(path, name)`.

    Attributes:
        path: Hub dataset id, e.g. "SetFit/sst2".
        name: Dataset config name, if the dataset has several.
        text_column: Column holding the text.
        label_column: Column holding the label (ints, strings or a ClassLabel; ClassLabel ids are
            replaced by their names).
        splits: Our split name -> hub split name; "train" is required. A hub split that does not
            exist is treated as missing (and carved from train when needed); a hub split whose
            labels are all missing (-1 or None, as in GLUE test sets) is treated as missing too.
    """

    path: str
    name: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    splits: Mapping[str, str] = field(default_factory=lambda: {split: split for split in SPLIT_NAMES})

    def __post_init__(self) -> None:
        check_split_names("splits", self.splits)

    @classmethod
    def from_section(cls, section: Section) -> HubSource:
        section.check_keys(("path", "name", "text", "label", "splits"))
        return section.build(
            cls,
            path=section.string("path"),
            name=section.optional_string("name"),
            text_column=section.string("text", cls.text_column),
            label_column=section.string("label", cls.label_column),
            splits=section.string_map("splits") or {split: split for split in SPLIT_NAMES},
        )


@dataclass(frozen=True)
class LocalSource:
    """Local files, read through `datasets`.

    Attributes:
        format: One of LOCAL_FORMATS: "label_text", "csv", "tsv", "json", "aclimdb" (described in
            `trainables.data.text_files`).
        files: Our split name ("train", "validation", "test") -> path, relative to the data root
            (absolute paths are allowed too, and then need no data root). For "aclimdb", `files`
            holds a single entry, conventionally `{"archive": "imdb/aclImdb_train_test.tar.gz"}`,
            whose path is the .tar.gz (streamed, never extracted to disk), the extracted `aclImdb`
            folder, or a folder containing it; that one entry provides both train and test.
        text_column: Text column name (csv, tsv, json).
        label_column: Label column name (csv, tsv, json).
    """

    format: str
    files: Mapping[str, str]
    text_column: str = "text"
    label_column: str = "label"

    def __post_init__(self) -> None:
        check_choice("format", self.format, LOCAL_FORMATS)
        if self.format != "aclimdb":
            check_split_names("files", self.files)
        elif len(self.files) != 1:
            raise FieldError(
                "files",
                "aclimdb data takes a single entry, e.g. files={'archive': 'imdb/aclImdb_train_test.tar.gz'}; "
                f"got {dict(self.files)}",
            )

    @classmethod
    def from_section(cls, section: Section) -> LocalSource:
        section.check_keys(("format", "files", "text", "label"))
        return section.build(
            cls,
            format=section.string("format"),
            files=section.string_map("files", required=True),
            text_column=section.string("text", cls.text_column),
            label_column=section.string("label", cls.label_column),
        )


@dataclass(frozen=True)
class TextDataSpec:
    """What to load and how to encode it.

    Attributes:
        name: Short dataset name for messages.
        hub: Where to find it on the hub (used when the local files are not available).
        local: Where to find it under the data root (preferred when all its files exist).
        carve: Split -> fraction of train, in (0, 0.5) (e.g. {"validation": 0.1, "test": 0.1}),
            cut from train with the seed when that split is missing. Fractions are of the full
            train split.
        lowercase: Lowercase text before tokenizing.
        max_length: Tokens kept per example (longer texts are truncated); >= 1.
        min_freq: Vocabulary keeps tokens seen at least this often in train; >= 1.
        max_vocab: Vocabulary size cap, counting "<pad>" and "<unk>"; >= 3.
        max_examples: Split -> examples kept (the first N, after carving; N >= 1); absent = all.
        subword_max_length: Sub-words kept per example (special tokens included) by a pretrained
            encoder's tokenizer; >= 8.
        pretrained: Models to tokenize for, one sub-word encoding each (`trainables.data.subwords`).
            Not read from the study file: the engine fills it in from the space's `transformer`
            encoder (`subwords.with_pretrained`).
    """

    name: str
    hub: HubSource | None = None
    local: LocalSource | None = None
    carve: Mapping[str, float] = field(default_factory=dict)
    lowercase: bool = True
    max_length: int = 128
    min_freq: int = 1
    max_vocab: int = 50_000
    max_examples: Mapping[str, int] = field(default_factory=dict)
    subword_max_length: int = 128
    pretrained: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_sources(self.hub, self.local, "a dataset needs `hub` (a hub dataset name) or `local` (files under the data root), or both")
        check_carve(self.carve, "train")
        check_minimum("max_length", self.max_length, 1)
        check_minimum("min_freq", self.min_freq, 1)
        check_minimum("max_vocab", self.max_vocab, 3)
        check_minimum("subword_max_length", self.subword_max_length, 8)
        check_max_examples(self.max_examples)

    @classmethod
    def from_section(cls, section: Section) -> TextDataSpec:
        """The `data:` section of a text-classification study file."""
        section.check_keys(("name", "hub", "local", "carve", "lowercase", "max_length", "min_freq", "max_vocab", "max_examples", "subword_max_length"))
        hub = section.section("hub", required=False)
        local = section.section("local", required=False)
        carve = section.section("carve", required=False)
        limits = section.section("max_examples", required=False)
        return section.build(
            cls,
            name=section.string("name", "dataset"),
            hub=HubSource.from_section(hub) if hub is not None else None,
            local=LocalSource.from_section(local) if local is not None else None,
            carve={split: carve.number(split) for split in carve.data} if carve is not None else {},
            lowercase=section.boolean("lowercase", cls.lowercase),
            max_length=section.integer("max_length", cls.max_length),
            min_freq=section.integer("min_freq", cls.min_freq),
            max_vocab=section.integer("max_vocab", cls.max_vocab),
            max_examples={split: limits.integer(split) for split in limits.data} if limits is not None else {},
            subword_max_length=section.integer("subword_max_length", cls.subword_max_length),
        )


# eq=False: the generated __eq__ would compare numpy arrays, whose truth value is ambiguous.
@dataclass(frozen=True, eq=False)
class EncodedSplit:
    """One split, token ids stored ragged (no padding).

    Attributes:
        tokens: int32, every example's token ids concatenated.
        offsets: int64, shape (N+1,); example i is tokens[offsets[i]:offsets[i+1]]. Every example
            has at least one token (an empty text becomes a single <unk>).
        labels: int64, shape (N,), indices into `TextClassificationData.labels`.
    """

    tokens: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def lengths(self) -> np.ndarray:
        """Tokens per example, int64 of shape (N,)."""
        return np.diff(self.offsets)


@dataclass(frozen=True)
class TextClassificationData:
    """An encoded dataset, ready to ship to trials.

    Attributes:
        train: Training split.
        validation: Validation split (the one trials report on).
        test: Test split, or None when the dataset has none and no carve fraction asked for one.
        vocab: Token strings by id; index 0 is "<pad>", 1 is "<unk>".
        labels: Label names; a label id is an index into this list.
        source: One line for the user saying where the data was read from.
        subwords: Pretrained model name -> the same examples in that model's sub-words.
        teacher: float32 [N_train, C], a study teacher's logits on each training example
            (`trainables.teacher`); None without a teacher.
    """

    train: EncodedSplit
    validation: EncodedSplit
    test: EncodedSplit | None
    vocab: list[str]
    labels: list[str]
    source: str
    subwords: Mapping[str, SubwordClassificationData] = field(default_factory=dict)
    teacher: np.ndarray | None = None


# --------------------------------------------------------------------------------------------
# Tokenizing


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split a text into word and punctuation tokens.

    `<br />` tags are dropped; words keep one apostrophe suffix ("it's", "n't"); every other
    non-space, non-word character is a token of its own.

    Args:
        text: The raw text.
        lowercase: Lowercase before splitting.

    Returns:
        The tokens, in order.
    """
    if lowercase:
        text = text.lower()
    if "<" in text:
        text = _BREAK_TAG.sub(" ", text)
    return _TOKEN.findall(text)


# --------------------------------------------------------------------------------------------
# Loading


def load_splits(
    spec: TextDataSpec, data_root: str | os.PathLike | None, seed: int
) -> tuple[datasets.DatasetDict, str]:
    """Read the dataset's splits, from local files when available, else from the hub.

    Local files are used when every file of `spec.local` exists (relative paths are resolved
    against the data root: `data_root`, else the SEARCH_DATA_ROOT environment variable). Otherwise
    `spec.hub` is loaded. A missing validation split (and a missing test split, when `spec.carve`
    names one) is carved from train, stratified by label when possible, with `seed`.

    Args:
        spec: What to load.
        data_root: Directory the local paths are relative to; None to use SEARCH_DATA_ROOT.
        seed: Seed for carving splits out of train.

    Returns:
        A DatasetDict with "train", "validation" and, when available, "test", each with string
        columns "text" and "label" (the raw label as a string); and a one-line description of
        where the data came from.

    Raises:
        DataError: The data could not be found or read.
    """
    local = spec.local

    def read_local(paths: dict[str, Path]) -> tuple[dict[str, datasets.Dataset], str]:
        assert local is not None
        return read_text_files(local.format, paths, local.text_column, local.label_column), ""

    def read_hub(loaded: datasets.DatasetDict) -> tuple[dict[str, datasets.Dataset], str]:
        assert spec.hub is not None
        return _select_hub_splits(spec.hub, loaded), ""

    splits, source = read_local_or_hub(
        spec.name, local, spec.hub, data_root,
        local_format=local.format if local is not None else "", read_local=read_local, read_hub=read_hub,
    )
    splits, notes = carve_missing(splits, spec.carve, seed, spec.name)
    for split, limit in spec.max_examples.items():
        if split in splits and limit < len(splits[split]):
            notes.append(f"{split}: first {limit} of {len(splits[split])} examples kept")
            splits[split] = splits[split].select(range(limit))
    if notes:
        source += "; " + "; ".join(notes)
    return datasets.DatasetDict(splits), source


def _select_hub_splits(hub: HubSource, loaded: datasets.DatasetDict) -> dict[str, datasets.Dataset]:
    def prepare(ours: str, theirs: str, dataset: datasets.Dataset) -> datasets.Dataset | None:
        where = f"hub dataset {hub.path}, split {theirs}"
        dataset = normalize_columns(dataset, hub.text_column, hub.label_column, where)
        missing = missing_label_rows(dataset)
        if missing and len(missing) == len(dataset) and ours != "train":
            return None  # an unlabeled split (e.g. a GLUE test set) is as good as none
        if missing:
            raise DataError(f"{where}: {len(missing)} examples have no label (first at row {missing[0]})")
        return dataset

    return select_hub_splits(hub, loaded, prepare)


# --------------------------------------------------------------------------------------------
# Encoding


def _sorted_labels(labels: set[str]) -> list[str]:
    """Numeric labels in numeric order ("2" before "10"), other labels in string order."""
    if all(_INTEGER.fullmatch(label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _encode_split(
    token_lists: Sequence[list[str]],
    labels: Sequence[str | None],
    token_ids: Mapping[str, int],
    label_ids: Mapping[str, int],
    split: str,
) -> EncodedSplit:
    lengths = np.empty(len(token_lists), dtype=np.int64)
    flat: list[int] = []
    lookup = token_ids.get
    for row, tokens in enumerate(token_lists):
        ids = [lookup(token, UNK_ID) for token in tokens] or [UNK_ID]
        flat.extend(ids)
        lengths[row] = len(ids)
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    unknown = sorted({label for label in labels if label not in label_ids}, key=str)
    if unknown:
        raise DataError(
            f"{split} split has labels not seen in train: {', '.join(map(repr, unknown[:10]))}"
            f" (train labels: {', '.join(map(repr, label_ids))})"
        )
    return EncodedSplit(
        tokens=np.asarray(flat, dtype=np.int32),
        offsets=offsets,
        labels=np.array([label_ids[label] for label in labels], dtype=np.int64),  # type: ignore[index]
    )


def encode(splits: datasets.DatasetDict, spec: TextDataSpec, source: str = "") -> TextClassificationData:
    """Tokenize every split and pack it into arrays, with a vocabulary built from train only.

    The vocabulary counts the (truncated) training tokens, the only ones a model ever trains on;
    it keeps tokens seen at least `spec.min_freq` times, most frequent first (ties by token, for
    determinism), up to `spec.max_vocab` entries including "<pad>" and "<unk>". Label ids follow
    the sorted train labels (numerically when all labels are integers).

    Args:
        splits: "train", "validation" and optionally "test", with string columns "text"/"label".
        spec: Tokenizing and vocabulary settings.
        source: Where the data came from, kept for messages.

    Returns:
        The encoded dataset.

    Raises:
        DataError: A required split is missing, train is empty, or a validation/test label does
            not occur in train.
    """
    for required in ("train", "validation"):
        if required not in splits:
            raise DataError(f"dataset {spec.name!r}: no {required} split (have: {', '.join(splits)})")
    token_lists: dict[str, list[list[str]]] = {}
    labels: dict[str, list[str | None]] = {}
    for split in SPLIT_NAMES:
        if split in splits:
            texts = column(splits[split], "text")
            token_lists[split] = [tokenize(text or "", spec.lowercase)[: spec.max_length] for text in texts]
            labels[split] = column(splits[split], "label")
    if not labels["train"]:
        raise DataError(f"dataset {spec.name!r}: the train split is empty")
    if None in labels["train"]:
        raise DataError(f"dataset {spec.name!r}: train has examples without a label")

    counts: Counter[str] = Counter()
    for tokens in token_lists["train"]:
        counts.update(tokens)
    vocab = build_vocab(counts, spec.min_freq, spec.max_vocab)
    token_ids = {token: index for index, token in enumerate(vocab)}
    label_names = _sorted_labels(set(labels["train"]))  # type: ignore[arg-type]  # None excluded above
    label_ids = {label: index for index, label in enumerate(label_names)}

    encoded = {
        split: _encode_split(token_lists[split], labels[split], token_ids, label_ids, f"dataset {spec.name!r}: {split}")
        for split in token_lists
    }
    return TextClassificationData(
        train=encoded["train"],
        validation=encoded["validation"],
        test=encoded.get("test"),
        vocab=vocab,
        labels=label_names,
        source=source,
    )


def encode_with_vocabulary(train: datasets.Dataset, spec: TextDataSpec, vocab: Sequence[str], label_names: Sequence[str]) -> TextClassificationData:
    """`train` encoded with a given vocabulary and labels (a trained model's, from `search train`'s
    vocab.json), tokenized as `spec` says; it stands in for every split."""
    token_ids = {token: index for index, token in enumerate(vocab)}
    label_ids = {label: index for index, label in enumerate(label_names)}
    token_lists = [tokenize(text or "", spec.lowercase)[: spec.max_length] for text in column(train, "text")]
    split = _encode_split(token_lists, column(train, "label"), token_ids, label_ids, f"dataset {spec.name!r}: train")
    return TextClassificationData(train=split, validation=split, test=None, vocab=list(vocab), labels=list(label_names), source="")


def load_text_classification(
    spec: TextDataSpec, data_root: str | os.PathLike | None = None, seed: int = 0
) -> TextClassificationData:
    """Load (`load_splits`) and encode (`encode`) a text-classification dataset.

    Args:
        spec: What to load and how to encode it.
        data_root: Directory local paths are relative to; None to use SEARCH_DATA_ROOT.
        seed: Seed for carving missing splits out of train.

    Returns:
        The encoded dataset.

    Raises:
        DataError: The data could not be found, read or encoded.
    """
    splits, source = load_splits(spec, data_root, seed)
    data = encode(splits, spec, source)
    return add_subwords(data, spec.pretrained, lambda model: encode_classification(splits, data.labels, model, data_root, spec.subword_max_length))
