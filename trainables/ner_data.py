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

The data-root resolution, hub probe, caching and carving are those of `trainables.data`.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainables._lazy import lazy_import
from trainables.data import (
    PAD_TOKEN,
    SPLIT_NAMES,
    UNK_ID,
    UNK_TOKEN,
    DataError,
    _build_vocab,
    _carve_missing,
    _decode_line,
    _describe_local_source,
    _describe_path,
    _fetch_hub,
    _file_stamp,
    _from_generator,
    _HubUnavailable,
    _local_paths,
    _missing_data_message,
    _resolve_data_root,
    check_split_files,
)

datasets = lazy_import("datasets")

SCHEMES = ("iob1", "iob2", "bioes")
# Schemes a model is trained and evaluated in; IOB1 is only ever a file format.
TARGET_SCHEMES = ("iob2", "bioes")
DOCSTART = "-DOCSTART-"

_PREFIXES = {"iob1": ("B", "I"), "iob2": ("B", "I"), "bioes": ("B", "I", "E", "S")}
# Tag-set order within a type: the order the prefixes occur in an entity.
_PREFIX_ORDER = {"B": 0, "I": 1, "E": 2, "S": 3}
# `datasets.List` is the 4.x+ name; `Sequence` builds the same feature on 3.x.
@functools.cache
def ner_features() -> datasets.Features:
    sequence = getattr(datasets, "List", None) or datasets.Sequence
    return datasets.Features({"tokens": sequence(datasets.Value("string")), "tags": sequence(datasets.Value("string"))})


@dataclass(frozen=True)
class ConllSource:
    """CoNLL-style files (one token per line, columns separated by whitespace, blank line between
    sentences, `-DOCSTART-` lines skipped), read through `datasets`.

    Attributes:
        files: Our split name ("train", "validation", "test") -> path, relative to the data root
            (absolute paths are allowed and then need no data root). "train" is required.
        scheme: The files' tag scheme: "iob1", "iob2" or "bioes".
        token_column: Column holding the token (negative counts from the end).
        tag_column: Column holding the tag; the last column by default.
    """

    files: Mapping[str, str]
    scheme: str = "iob2"
    token_column: int = 0
    tag_column: int = -1

    def __post_init__(self) -> None:
        if not self.files:
            raise DataError("CoNLL data source lists no files")
        check_split_files(self.files, "CoNLL files")
        _check_scheme(self.scheme, SCHEMES, "CoNLL files' tag scheme")
        if self.token_column == self.tag_column:
            raise DataError(f"CoNLL token and tag columns are the same column ({self.token_column})")


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
        splits: Our split name -> hub split name. A hub split that does not exist is treated as
            missing (a missing validation split is carved from train).
    """

    path: str
    name: str | None = None
    tokens_column: str = "tokens"
    tags_column: str = "ner_tags"
    scheme: str = "iob2"
    splits: Mapping[str, str] = field(default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"})

    def __post_init__(self) -> None:
        _check_scheme(self.scheme, SCHEMES, f"hub dataset {self.path}: tag scheme")


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
        min_freq: Word vocabulary keeps words seen at least this often in train.
        max_vocab: Word vocabulary size cap, counting "<pad>" and "<unk>".
        max_word_length: Characters kept per token for the character encoder.
    """

    name: str
    hub: HubNerSource | None = None
    local: ConllSource | None = None
    scheme: str = "iob2"
    lowercase_words: bool = True
    min_freq: int = 1
    max_vocab: int = 100_000
    max_word_length: int = 30

    def __post_init__(self) -> None:
        if self.hub is None and self.local is None:
            raise DataError(f"dataset {self.name!r}: neither a hub nor a local source is given")
        _check_scheme(self.scheme, TARGET_SCHEMES, f"dataset {self.name!r}: target tag scheme")
        if self.min_freq < 1 or self.max_vocab < 3 or self.max_word_length < 1:
            raise DataError(
                f"dataset {self.name!r}: need min_freq >= 1, max_vocab >= 3 and max_word_length >= 1; got "
                f"{self.min_freq}, {self.max_vocab}, {self.max_word_length}"
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
    """

    train: EncodedSentences
    validation: EncodedSentences
    test: EncodedSentences | None
    words: list[str]
    chars: list[str]
    tags: list[str]
    scheme: str
    source: str

    def tag_names(self, ids: Iterable[int]) -> list[str]:
        """Tag names of a sequence of tag ids (ints or a numpy array)."""
        return [self.tags[int(index)] for index in ids]


# --------------------------------------------------------------------------------------------
# Tag schemes


class _BadTag(ValueError):
    """A tag that does not fit its scheme; `index` is its position in the sentence."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def _check_scheme(scheme: str, allowed: Sequence[str], what: str) -> None:
    if scheme not in allowed:
        raise DataError(f"{what} {scheme!r} is not one of {', '.join(allowed)}")


def _split_tag(tag: str, scheme: str, index: int) -> tuple[str, str]:
    """(prefix, type) of a tag; ("O", "") for "O". Types may hold "-", so split on the first only."""
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if not dash or not kind or prefix not in _PREFIXES[scheme]:
        expected = "/".join(f"{p}-TYPE" for p in _PREFIXES[scheme])
        raise _BadTag(index, f"tag {tag!r} at position {index} is not a valid {scheme} tag (expected O or {expected})")
    return prefix, kind


def convert_scheme(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Convert one sentence's tags between IOB1, IOB2 and BIOES.

    An entity starts at a B-X or S-X tag, or at an I-X/E-X tag not continuing an entity of type X
    (after O, another type, or an entity that ended with E-X/S-X). So IOB1's I-X that opens an
    entity becomes B-X in IOB2, and a stray I-X in IOB2 input is read the same way (as conlleval
    does). The output is always well-formed in the target scheme, so converting to the same
    scheme returns well-formed tags unchanged and only repairs such a stray I-X.

    Args:
        tags: The sentence's tags, e.g. ["I-ORG", "O", "I-PER", "B-PER"].
        source: Scheme of `tags`: "iob1", "iob2" or "bioes".
        target: Scheme to convert to: "iob1", "iob2" or "bioes".

    Returns:
        The converted tags, one per input tag.

    Raises:
        ValueError: An unknown scheme, or a tag that does not fit the source scheme (e.g. "X-PER",
            "B-" or "E-PER" in IOB2). Entity types may contain "-" ("B-creative-work").
    """
    for scheme in (source, target):
        if scheme not in SCHEMES:
            raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    parsed = [_split_tag(tag, source, index) for index, tag in enumerate(tags)]

    begins = [False] * len(parsed)
    previous_prefix, previous_kind = "O", ""
    for index, (prefix, kind) in enumerate(parsed):
        if prefix != "O":
            begins[index] = prefix in ("B", "S") or kind != previous_kind or previous_prefix in ("E", "S")
        previous_prefix, previous_kind = prefix, kind

    converted = []
    last = len(parsed) - 1
    for index, (prefix, kind) in enumerate(parsed):
        if prefix == "O":
            converted.append("O")
        elif target == "iob2":
            converted.append(("B-" if begins[index] else "I-") + kind)
        elif target == "iob1":
            # IOB1 marks B- only where an entity directly follows one of the same type.
            follows_same = begins[index] and index > 0 and parsed[index - 1][1] == kind
            converted.append(("B-" if follows_same else "I-") + kind)
        else:
            ends = index == last or parsed[index + 1][0] == "O" or begins[index + 1]
            if begins[index]:
                converted.append(("S-" if ends else "B-") + kind)
            else:
                converted.append(("E-" if ends else "I-") + kind)
    return converted


# --------------------------------------------------------------------------------------------
# Reading CoNLL files


def read_conll(path: str | os.PathLike, *, token_column: int = 0, tag_column: int = -1) -> Iterator[dict[str, list[str]]]:
    """The sentences of a CoNLL-style file.

    One token per line, columns separated by whitespace (spaces or tabs); a blank or
    whitespace-only line ends a sentence (WNUT-17 separates some with a lone tab); `-DOCSTART-`
    lines are skipped (and end a sentence); the last sentence needs no blank line after it.
    Lines are decoded as UTF-8, falling back to cp1252 per line.

    Args:
        path: The file.
        token_column: Column holding the token (negative counts from the end).
        tag_column: Column holding the tag (negative counts from the end).

    Yields:
        {"tokens": [...], "tags": [...]} per sentence, tags as written in the file.

    Raises:
        DataError: The file cannot be read, a line has fewer columns than the token and tag
            columns need, or a line's column count differs from the file's first line (the
            message names the file and the line number).
    """
    for _, tokens, tags in _conll_sentences(Path(path), token_column, tag_column):
        yield {"tokens": tokens, "tags": tags}


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # only then pay for line-by-line decoding
        text = "\n".join(_decode_line(line) for line in raw.split(b"\n"))
    return text.removeprefix("\ufeff")


def _resolve_columns(fields: list[str], token_column: int, tag_column: int, where: str) -> tuple[int, int]:
    count = len(fields)
    needed = max(column + 1 if column >= 0 else -column for column in (token_column, tag_column))
    if count < needed:
        raise DataError(
            f"{where}: {count} column(s), fewer than needed for token column {token_column} and tag column"
            f" {tag_column}: {' '.join(fields)!r}"
        )
    token_index, tag_index = token_column % count, tag_column % count
    if token_index == tag_index:
        raise DataError(
            f"{where}: {count} column(s), so token column {token_column} and tag column {tag_column} are the"
            f" same column: {' '.join(fields)!r}"
        )
    return token_index, tag_index


def _conll_sentences(path: Path, token_column: int, tag_column: int) -> Iterator[tuple[int, list[str], list[str]]]:
    """(line number of the first token, tokens, tags) per sentence."""
    # Split on "\n" only: str.splitlines() would also break inside a line at U+0085 or U+2028.
    columns = 0
    token_index = tag_index = 0
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        fields = line.split()
        if not fields or fields[0] == DOCSTART:
            if tokens:
                yield start, tokens, tags
                tokens, tags = [], []
            continue
        if not columns:
            token_index, tag_index = _resolve_columns(fields, token_column, tag_column, f"{path}, line {number}")
            columns = len(fields)
        elif len(fields) != columns:
            raise DataError(
                f"{path}, line {number}: {len(fields)} column(s), but the file's first line has {columns}: {line.strip()!r}"
            )
        if not tokens:
            start = number
        tokens.append(fields[token_index])
        tags.append(fields[tag_index])
    if tokens:
        yield start, tokens, tags


def _conll_examples(
    path: str, stamp: str, token_column: int, tag_column: int, scheme: str, target: str
) -> Iterator[dict[str, list[str]]]:
    """Sentences of a CoNLL file with tags converted to `target`. `stamp` only serves as a cache key."""
    del stamp
    found = False
    for start, tokens, tags in _conll_sentences(Path(path), token_column, tag_column):
        try:
            converted = convert_scheme(tags, scheme, target)
        except _BadTag as error:
            # A sentence's tokens are on consecutive lines.
            raise DataError(f"{path}, line {start + error.index}: {error}") from None
        found = True
        yield {"tokens": tokens, "tags": converted}
    if not found:
        raise DataError(f"{path}: no sentences")


def _read_conll_split(local: ConllSource, path: Path, target: str) -> datasets.Dataset:
    gen_kwargs = {
        "path": str(path),
        "stamp": _file_stamp(path),
        "token_column": local.token_column,
        "tag_column": local.tag_column,
        "scheme": local.scheme,
        "target": target,
    }
    return _from_generator(_conll_examples, gen_kwargs, str(path), ner_features())


# --------------------------------------------------------------------------------------------
# Hub


def _select_hub_splits(
    hub: HubNerSource, raw: datasets.DatasetDict, target: str
) -> tuple[dict[str, datasets.Dataset], list[str]]:
    unknown = sorted(set(hub.splits) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(
            f"hub dataset {hub.path}: splits mapping names unknown splits {unknown}; expected some of {list(SPLIT_NAMES)}"
        )
    splits: dict[str, datasets.Dataset] = {}
    notes = []
    for ours, theirs in hub.splits.items():
        if theirs not in raw:
            if ours == "train":
                raise DataError(f"hub dataset {hub.path} has no split {theirs!r}; it has: {', '.join(raw)}")
            continue
        where = f"hub dataset {hub.path}, split {theirs}"
        dataset = _normalize_hub_split(raw[theirs], hub, target, where)
        dropped = len(raw[theirs]) - len(dataset)
        if dropped:
            notes.append(f"{dropped} empty sentences dropped from {theirs}")
        if len(dataset) == 0:
            raise DataError(f"{where}: no sentences")
        splits[ours] = dataset
    if "train" not in splits:
        raise DataError(f"hub dataset {hub.path}: no train split is mapped (splits={dict(hub.splits)})")
    return splits, notes


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
            except _BadTag as error:
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
    root = _resolve_data_root(data_root)
    splits: dict[str, datasets.Dataset] | None = None
    source = ""
    missing_local: list[str] = []

    if spec.local is not None:
        paths = _local_paths(spec.local, root)
        missing_local = [
            _describe_path(key, path, spec.local) for key, path in paths.items() if path is None or not path.exists()
        ]
        if not missing_local:
            splits = {split: _read_conll_split(spec.local, path, spec.scheme) for split, path in paths.items()}  # type: ignore[arg-type]  # all resolved here
            source = _describe_local_source(root, paths) + _scheme_note(spec.local.scheme, spec.scheme)

    hub_error: str | None = None
    if splits is None and spec.hub is not None:
        try:
            raw = _fetch_hub(spec.hub)
        except _HubUnavailable as error:
            hub_error = str(error)
        else:
            splits, notes = _select_hub_splits(spec.hub, raw, spec.scheme)
            source = f"hub dataset {spec.hub.path}" + (f" (config {spec.hub.name})" if spec.hub.name else "")
            source += _scheme_note(spec.hub.scheme, spec.scheme) + "".join(f"; {note}" for note in notes)

    if splits is None:
        raise DataError(
            _missing_data_message(
                spec.name,
                "CoNLL" if spec.local is not None else None,
                root,
                data_root,
                missing_local,
                hub_error if spec.hub is not None else None,
            )
        )

    splits, notes = _carve_missing(splits, {}, seed, spec.name)
    if notes:
        source += "; " + "; ".join(notes)
    return datasets.DatasetDict(splits), source


def _scheme_note(source: str, target: str) -> str:
    return f"; tags {source} -> {target}" if source != target else f"; tags {target}"


# --------------------------------------------------------------------------------------------
# Encoding


def _flat_column(dataset: datasets.Dataset, name: str, where: str) -> tuple[list[str], np.ndarray]:
    """(all items of a list-of-strings column, concatenated; items per row) via Arrow."""
    # Through the Arrow table (honouring any indices mapping left by a carve): no per-row Python.
    column = dataset.with_format("arrow")[name]
    if column.null_count:
        raise DataError(f"{where}: {column.null_count} rows have no {name!r}")
    lengths = pc.list_value_length(column).to_numpy().astype(np.int64)
    flat = pc.list_flatten(column)
    if flat.null_count:
        flat = pc.fill_null(flat, pa.scalar("", flat.type))
    return flat.to_pylist(), lengths


def _tag_key(tag: str) -> tuple[int, str, int]:
    if tag == "O":
        return 0, "", 0
    prefix, _, kind = tag.partition("-")
    return 1, kind, _PREFIX_ORDER[prefix]


def _char_codes(tokens: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(code points of every token's first `max_length` characters, concatenated; characters per token)."""
    cut = [token[:max_length] for token in tokens]
    lengths = np.fromiter(map(len, cut), dtype=np.int64, count=len(cut))
    # One UTF-32 buffer: every code point as a uint32, with no per-character Python work.
    codes = np.frombuffer("".join(cut).encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    return codes, lengths


class _CharTable:
    """Character vocabulary over code points, with a vectorized lookup."""

    def __init__(self, train_codes: np.ndarray) -> None:
        values, counts = np.unique(train_codes, return_counts=True)
        order = np.lexsort((values, -counts))  # most frequent first, ties by code point
        self.chars = [PAD_TOKEN, UNK_TOKEN] + [chr(value) for value in values[order]]
        self._values = values
        self._ids = np.empty(len(values), dtype=np.int32)
        self._ids[order] = np.arange(2, len(values) + 2, dtype=np.int32)

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        if not len(self._values):
            return np.full(len(codes), UNK_ID, dtype=np.int32)
        position = np.minimum(np.searchsorted(self._values, codes), len(self._values) - 1)
        return np.where(self._values[position] == codes, self._ids[position], UNK_ID).astype(np.int32)


def _encode_split(
    tokens: list[str],
    lengths: np.ndarray,
    tags: list[str],
    word_ids: Mapping[str, int],
    chars: _CharTable,
    tag_ids: Mapping[str, int],
    spec: NerDataSpec,
    where: str,
) -> EncodedSentences:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    lookup = word_ids.get
    words = [token.lower() for token in tokens] if spec.lowercase_words else tokens
    word_array = np.fromiter((lookup(word, UNK_ID) for word in words), dtype=np.int32, count=len(words))

    codes, char_lengths = _char_codes(tokens, spec.max_word_length)
    char_array = chars.lookup(codes)
    empty = np.flatnonzero(char_lengths == 0)
    if len(empty):  # an empty token still gets one character, "<unk>"
        starts = np.zeros(len(char_lengths), dtype=np.int64)
        np.cumsum(char_lengths[:-1], out=starts[1:])
        char_array = np.insert(char_array, starts[empty], UNK_ID).astype(np.int32)
        char_lengths[empty] = 1
    char_offsets = np.zeros(len(char_lengths) + 1, dtype=np.int64)
    np.cumsum(char_lengths, out=char_offsets[1:])

    unknown = sorted(set(tags) - set(tag_ids), key=_safe_tag_key)
    if unknown:
        raise DataError(
            f"{where} split has tags not seen in train: {', '.join(map(repr, unknown[:10]))} (train tags: {', '.join(tag_ids)})"
        )
    tag_array = np.fromiter((tag_ids[tag] for tag in tags), dtype=np.int32, count=len(tags))
    return EncodedSentences(words=word_array, offsets=offsets, chars=char_array, char_offsets=char_offsets, tags=tag_array)


def _safe_tag_key(tag: str) -> tuple[int, str, int]:
    prefix = tag.partition("-")[0]
    return _tag_key(tag) if tag == "O" or prefix in _PREFIX_ORDER else (2, tag, 0)


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
    words = _build_vocab(counts, spec.min_freq, spec.max_vocab)
    word_ids = {word: index for index, word in enumerate(words)}
    chars = _CharTable(_char_codes(train_tokens, spec.max_word_length)[0])
    tag_set = set(train_tags)
    for tag in tag_set:
        try:
            _split_tag(tag, spec.scheme, 0)
        except _BadTag:
            raise DataError(f"dataset {spec.name!r}: train tag {tag!r} is not a {spec.scheme} tag") from None
    tags = sorted(tag_set, key=_tag_key)
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
    return encode_ner(splits, spec, source)
