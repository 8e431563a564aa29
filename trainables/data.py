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

import csv
import functools
import math
import os
import re
import socket
import tarfile
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from trainables._lazy import lazy_import

DATA_ROOT_ENV = "SEARCH_DATA_ROOT"
LOCAL_FORMATS = ("label_text", "csv", "tsv", "json", "aclimdb")
SPLIT_NAMES = ("train", "validation", "test")
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
PAD_ID = 0
UNK_ID = 1
# Used when validation is missing and the spec gives no carve fraction for it.
DEFAULT_VALIDATION_FRACTION = 0.1
# Seconds allowed for the hub connectivity probe (see `_hub_unreachable_reason`).
HUB_PROBE_TIMEOUT_S = 3.0

datasets = lazy_import("datasets")


@functools.cache
def string_features() -> datasets.Features:
    return datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("string")})
# `<br />` is how aclImdb (and the hub's imdb) mark paragraph breaks; it is markup, not words.
_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
# A word (letters/digits/underscore), optionally with one apostrophe suffix ("it's", "n't"), or a
# single punctuation character. Simple, language-agnostic enough for the benchmark corpora.
_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
_ACLIMDB_MEMBER = re.compile(r"(?:^|/)(train|test)/(neg|pos)/[^/]+\.txt$")
_INTEGER = re.compile(r"-?\d+")


class DataError(Exception):
    """A dataset could not be read; the message is for the user (names files, fields, what was expected)."""


# What the shared loading helpers need of a source; `trainables.ner_data` reuses them with its
# own source classes.
class _FileSource(Protocol):
    @property
    def files(self) -> Mapping[str, str]: ...


class _HubLocation(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def name(self) -> str | None: ...


@dataclass(frozen=True)
class HubSource:
    """A dataset on the Hugging Face hub, read with `datasets.load_dataset(path, name)`.

    Attributes:
        path: Hub dataset id, e.g. "SetFit/sst2".
        name: Dataset config name, if the dataset has several.
        text_column: Column holding the text.
        label_column: Column holding the label (ints, strings or a ClassLabel; ClassLabel ids are
            replaced by their names).
        splits: Our split name -> hub split name. A hub split that does not exist is treated as
            missing (and carved from train when needed); a hub split whose labels are all missing
            (-1 or None, as in GLUE test sets) is treated as missing too.
    """

    path: str
    name: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    splits: Mapping[str, str] = field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"}
    )


@dataclass(frozen=True)
class LocalSource:
    """Local files, read through `datasets`.

    Attributes:
        format: One of LOCAL_FORMATS:
            "label_text": one example per line, `LABEL TEXT` (the label is the first
                whitespace-separated field). Lines are decoded as UTF-8, falling back to cp1252 per
                line (MR and SUBJ are cp1252). Blank lines are skipped.
            "csv" / "tsv": a header row naming the columns; tsv is read with no quoting (GLUE-style
                files hold unbalanced quotes in sentences).
            "json": JSON Lines, or one JSON list of objects.
            "aclimdb": the aclImdb v1 layout `aclImdb/{train,test}/{neg,pos}/*.txt`; the label is
                the folder name and `train/unsup` is ignored.
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
        if self.format not in LOCAL_FORMATS:
            raise DataError(f"local data format {self.format!r} is not one of {', '.join(LOCAL_FORMATS)}")
        if not self.files:
            raise DataError("local data source lists no files")
        if self.format == "aclimdb":
            if len(self.files) != 1:
                raise DataError(
                    "aclimdb data takes a single entry, e.g. files={'archive': 'imdb/aclImdb_train_test.tar.gz'}; "
                    f"got {dict(self.files)}"
                )
        else:
            check_split_files(self.files, "local files")


def check_split_files(files: Mapping[str, str], what: str) -> None:
    """Split name -> file mappings of every task: known split names, and a train file."""
    unknown = sorted(set(files) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"{what} name unknown splits {unknown}; expected some of {list(SPLIT_NAMES)}")
    if "train" not in files:
        raise DataError(f"{what} must include a 'train' file; got splits {sorted(files)}")


@dataclass(frozen=True)
class TextDataSpec:
    """What to load and how to encode it.

    Attributes:
        name: Short dataset name for messages.
        hub: Where to find it on the hub (used when the local files are not available).
        local: Where to find it under the data root (preferred when all its files exist).
        carve: Split -> fraction of train (e.g. {"validation": 0.1, "test": 0.1}) cut from train,
            with the seed, when that split is missing. Fractions are of the full train split.
        lowercase: Lowercase text before tokenizing.
        max_length: Tokens kept per example (longer texts are truncated).
        min_freq: Vocabulary keeps tokens seen at least this often in train.
        max_vocab: Vocabulary size cap, counting "<pad>" and "<unk>".
    """

    name: str
    hub: HubSource | None = None
    local: LocalSource | None = None
    carve: Mapping[str, float] = field(default_factory=dict)
    lowercase: bool = True
    max_length: int = 128
    min_freq: int = 1
    max_vocab: int = 50_000

    def __post_init__(self) -> None:
        if self.hub is None and self.local is None:
            raise DataError(f"dataset {self.name!r}: neither a hub nor a local source is given")
        check_carve(self.name, self.carve)
        if self.max_length < 1 or self.min_freq < 1 or self.max_vocab < 3:
            raise DataError(
                f"dataset {self.name!r}: need max_length >= 1, min_freq >= 1 and max_vocab >= 3; got "
                f"{self.max_length}, {self.min_freq}, {self.max_vocab}"
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
    """

    train: EncodedSplit
    validation: EncodedSplit
    test: EncodedSplit | None
    vocab: list[str]
    labels: list[str]
    source: str


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
    return _TOKEN.findall(_clean(text, lowercase))


def _clean(text: str, lowercase: bool) -> str:
    if lowercase:
        text = text.lower()
    if "<" in text:
        text = _BREAK_TAG.sub(" ", text)
    return text


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
    root = _resolve_data_root(data_root)
    splits: dict[str, datasets.Dataset] | None = None
    source = ""
    missing_local: list[str] = []

    if spec.local is not None:
        paths = _local_paths(spec.local, root)
        missing_local = [
            _describe_path(key, path, spec.local)
            for key, path in paths.items()
            if path is None or not path.exists()
        ]
        if not missing_local:
            splits = _read_local(spec.local, paths)  # type: ignore[arg-type]  # all resolved here
            source = _describe_local_source(root, paths)

    hub_error = ""
    if splits is None and spec.hub is not None:
        try:
            raw = _fetch_hub(spec.hub)
        except _HubUnavailable as error:
            hub_error = str(error)
        else:
            splits = _select_hub_splits(spec.hub, raw)
            source = f"hub dataset {spec.hub.path}" + (f" (config {spec.hub.name})" if spec.hub.name else "")

    if splits is None:
        raise DataError(_not_found_message(spec, root, data_root, missing_local, hub_error))

    splits, notes = _carve_missing(splits, spec.carve, seed, spec.name)
    if notes:
        source += "; " + "; ".join(notes)
    return datasets.DatasetDict(splits), source


def _resolve_data_root(data_root: str | os.PathLike | None) -> Path | None:
    if data_root is None:
        data_root = os.environ.get(DATA_ROOT_ENV) or None
    return Path(data_root).expanduser().resolve() if data_root is not None else None


def _local_paths(local: _FileSource, root: Path | None) -> dict[str, Path | None]:
    """Split key -> absolute path; None for a relative path when no data root is set."""
    paths: dict[str, Path | None] = {}
    for key, relative in local.files.items():
        path = Path(relative).expanduser()
        if path.is_absolute():
            paths[key] = path
        else:
            paths[key] = root / path if root is not None else None
    return paths


def _describe_path(key: str, path: Path | None, local: _FileSource) -> str:
    shown = str(path) if path is not None else f"<data root>/{local.files[key]}"
    return f"{shown} ({key})"


def _describe_local_source(root: Path | None, paths: Mapping[str, Path | None]) -> str:
    shown = []
    for path in paths.values():
        assert path is not None
        if root is not None and path.is_relative_to(root):
            shown.append(str(path.relative_to(root)))
        else:
            shown.append(str(path))
    where = f"local files under {root}" if root is not None else "local files"
    return f"{where}: {', '.join(shown)}"


def _not_found_message(
    spec: TextDataSpec,
    root: Path | None,
    data_root_argument: str | os.PathLike | None,
    missing_local: Sequence[str],
    hub_error: str,
) -> str:
    return _missing_data_message(
        spec.name,
        spec.local.format if spec.local is not None else None,
        root,
        data_root_argument,
        missing_local,
        hub_error if spec.hub is not None else None,
    )


def _missing_data_message(
    name: str,
    local_format: str | None,
    root: Path | None,
    data_root_argument: str | os.PathLike | None,
    missing_local: Sequence[str],
    hub_error: str | None,
) -> str:
    """The not-found message: expected files, the data root and how to set it, the hub error.

    `local_format` None means no local files are configured; `hub_error` None, no hub dataset.
    """
    lines = [f"dataset {name!r} could not be loaded."]
    if local_format is not None:
        lines.append(f"  local {local_format} files expected but missing: {', '.join(missing_local)}")
    else:
        lines.append("  no local files are configured for it")
    how_to_set = f"set it with --data-root DIR or the environment variable {DATA_ROOT_ENV}"
    if root is None:
        lines.append(f"  data root: not set; {how_to_set}")
    else:
        origin = "as given" if data_root_argument is not None else f"from {DATA_ROOT_ENV}"
        exists = "" if root.is_dir() else ", does not exist"
        lines.append(f"  data root: {root} ({origin}{exists}); {how_to_set}")
    if hub_error is not None:
        lines.append(f"  hub: {hub_error}")
    else:
        lines.append("  hub: no hub dataset is configured for it")
    return "\n".join(lines)


def _file_stamp(path: Path) -> str:
    """Size and mtime: part of the generator cache key, so an edited file is read again.

    For a folder this only sees entries added or removed at its top level; edit an aclImdb
    folder's reviews in place and the `datasets` cache would keep the old text.
    """
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def _decode_line(raw: bytes) -> str:
    # Some benchmark files (MR, SUBJ) are cp1252, not UTF-8; decide per line so one bad byte
    # does not garble a whole UTF-8 file.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _label_text_examples(path: str, stamp: str) -> Iterator[dict[str, str]]:
    """Examples of a `LABEL TEXT` file. `stamp` only serves as a cache key."""
    del stamp
    # Split on b"\n" only: str.splitlines() also breaks on U+0085, which cp1252 byte 0x85
    # ("…") would turn into if decoded as latin-1, and on other Unicode separators.
    for raw in Path(path).read_bytes().split(b"\n"):
        line = _decode_line(raw).strip()
        if not line:
            continue
        # A label with no text is kept as an empty example: MPQA has three such phrases, and
        # its published size (10,606) counts them. Encoding turns an empty text into <unk>.
        parts = line.split(None, 1)
        yield {"text": parts[1] if len(parts) > 1 else "", "label": parts[0]}


def _aclimdb_examples(path: str, stamp: str) -> Iterator[dict[str, str]]:
    """Reviews of both aclImdb splits, tagged with their split, from a tar(.gz) archive or a folder."""
    del stamp
    location = Path(path)
    if location.is_file():
        # "r|*" streams the archive member by member: nothing is extracted to disk, and one pass
        # serves both splits.
        with tarfile.open(location, "r|*") as archive:
            for member in archive:
                match = _ACLIMDB_MEMBER.search(member.name)
                if member.isfile() and match:
                    handle = archive.extractfile(member)
                    assert handle is not None
                    yield {"text": _decode_line(handle.read()), "label": match[2], "split": match[1]}
        return
    folder = location / "aclImdb" if (location / "aclImdb").is_dir() else location
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            for review in sorted((folder / split / label).glob("*.txt")):
                yield {"text": _decode_line(review.read_bytes()), "label": label, "split": split}


def _from_generator(
    generator: Any, gen_kwargs: dict[str, Any], where: str, features: datasets.Features | None = None
) -> datasets.Dataset:
    """`Dataset.from_generator`, with our DataError surfacing instead of the library's wrapper."""
    try:
        return datasets.Dataset.from_generator(generator, features=features or string_features(), gen_kwargs=gen_kwargs)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - datasets wraps generator errors; unwrap ours
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, DataError):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        raise DataError(f"{where}: could not be read ({_one_line(error)})") from error


def _read_local(local: LocalSource, paths: Mapping[str, Path]) -> dict[str, datasets.Dataset]:
    if local.format == "aclimdb":
        (location,) = paths.values()
        return _read_aclimdb(location)

    splits = {}
    for split, path in paths.items():
        if local.format == "label_text":
            dataset = _from_generator(_label_text_examples, {"path": str(path), "stamp": _file_stamp(path)}, str(path))
        else:
            dataset = _read_table_file(local, path)
            missing = _missing_label_rows(dataset)
            if missing:
                raise DataError(
                    f"{path}: {len(missing)} examples have no {local.label_column!r} value"
                    f" (first at data row {missing[0] + 1})"
                )
        if len(dataset) == 0:
            raise DataError(f"{path}: no examples")
        splits[split] = dataset
    return splits


def _read_aclimdb(location: Path) -> dict[str, datasets.Dataset]:
    empty = f"{location}: no reviews found; expected aclImdb/{{train,test}}/{{neg,pos}}/*.txt"
    if location.is_dir():
        folder = location / "aclImdb" if (location / "aclImdb").is_dir() else location
        if not (folder / "train").is_dir():
            raise DataError(empty)
    features = datasets.Features({**string_features(), "split": datasets.Value("string")})
    try:
        reviews = _from_generator(
            _aclimdb_examples, {"path": str(location), "stamp": _file_stamp(location)}, str(location), features
        )
    except DataError as error:
        if "corresponds to no data" in str(error):  # the generator yielded nothing
            raise DataError(empty) from None
        raise
    split_of_row = np.asarray(_column(reviews, "split"))
    splits = {}
    for split in ("train", "test"):
        rows = np.flatnonzero(split_of_row == split)
        if len(rows):
            splits[split] = reviews.select(rows).remove_columns("split")
    if "train" not in splits:
        raise DataError(f"{location}: no training reviews found; expected aclImdb/train/{{neg,pos}}/*.txt")
    return splits


def _read_table_file(local: LocalSource, path: Path) -> datasets.Dataset:
    """A csv/tsv/json file through the `datasets` builders, normalized to text/label strings."""
    builder = "json" if local.format == "json" else "csv"
    options: dict[str, Any] = {}
    if local.format == "tsv":
        options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    try:
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as error:  # noqa: BLE001 - any parse failure is a bad file for the user
        raise DataError(f"{path}: could not be read as {local.format} ({_one_line(error)})") from error
    return _normalize_columns(dataset, local.text_column, local.label_column, str(path))


def _normalize_columns(dataset: datasets.Dataset, text_column: str, label_column: str, where: str) -> datasets.Dataset:
    """Keep the text and label columns, renamed "text"/"label", both as strings.

    ClassLabel ids become their names; missing texts become ""; missing labels (None, NaN, or a
    ClassLabel's -1) become None and are left to the caller to judge.
    """
    for role, column in (("text", text_column), ("label", label_column)):
        if column not in dataset.column_names:
            raise DataError(
                f"{where}: no {role} column {column!r}; the columns are: {', '.join(dataset.column_names)}"
            )
    label_feature = dataset.features[label_column]
    names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None

    def label_string(value: Any) -> str | None:
        if value is None:
            return None
        if names is not None:
            return names[value] if 0 <= value < len(names) else None
        if isinstance(value, float):
            if math.isnan(value):
                return None
            if value.is_integer():  # pandas turns an int column with gaps into floats
                return str(int(value))
        return str(value)

    def convert(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {
            "text": ["" if text is None else str(text) for text in batch[text_column]],
            "label": [label_string(label) for label in batch[label_column]],
        }

    return dataset.map(
        convert, batched=True, remove_columns=dataset.column_names, features=string_features(), desc="Reading"
    )


def _missing_label_rows(dataset: datasets.Dataset) -> list[int]:
    return [row for row, label in enumerate(_column(dataset, "label")) if label is None]


# --------------------------------------------------------------------------------------------
# Hub


class _HubUnavailable(Exception):
    """The hub dataset could not be loaded; the message is one line."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _hub_unreachable_reason() -> str | None:
    """A one-line reason when the hub cannot be reached, None when it can (or offline mode is on).

    Measured on a machine without network (datasets 5.2, huggingface_hub 2.4): a plain
    `load_dataset("SetFit/sst2")` takes about 23 s to fail. When the file is not cached,
    huggingface_hub repeats the metadata request with `http_backoff` (5 retries, waits of
    1+2+4+8+8 s) and exposes no setting for that retry count (`DownloadConfig.max_retries` does
    not reach it; HF_HUB_ETAG_TIMEOUT only bounds each attempt). So, unless the user chose offline
    mode (then `load_dataset` reads the cache and fails in well under a second), we first open a
    TCP connection to the hub endpoint (or the configured HTTPS proxy) with a short timeout; a DNS
    failure answers in milliseconds.
    """
    if datasets.config.HF_HUB_OFFLINE:
        return None
    from huggingface_hub import constants as hub_constants  # installed with datasets

    endpoint = urlsplit(hub_constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or host, proxy_url.port or 80

    outcome: dict[str, BaseException | None] = {}

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
                outcome["error"] = None
        except OSError as error:
            outcome["error"] = error

    # A thread, because name resolution itself has no timeout.
    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(HUB_PROBE_TIMEOUT_S + 1.0)
    if "error" not in outcome:
        return f"no answer from {host}:{port} within {HUB_PROBE_TIMEOUT_S:.0f} s"
    error = outcome["error"]
    return None if error is None else f"cannot connect to {host}:{port} ({error})"


def _fetch_hub(hub: _HubLocation) -> datasets.DatasetDict:
    label = hub.path + (f" (config {hub.name})" if hub.name else "")
    unreachable = _hub_unreachable_reason()
    if unreachable is not None:
        raise _HubUnavailable(
            f"could not load {label}: the hub is unreachable: {unreachable} "
            "(to use a copy in the local datasets cache, set HF_HUB_OFFLINE=1)"
        )
    try:
        loaded = datasets.load_dataset(hub.path, hub.name)
    except Exception as error:  # noqa: BLE001 - reported to the user in one line
        raise _HubUnavailable(f"could not load {label}: {_one_line(error)}") from error
    if not isinstance(loaded, datasets.DatasetDict):
        raise _HubUnavailable(f"could not load {label}: expected named splits, got {type(loaded).__name__}")
    return loaded


def _select_hub_splits(hub: HubSource, raw: datasets.DatasetDict) -> dict[str, datasets.Dataset]:
    unknown = sorted(set(hub.splits) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(
            f"hub dataset {hub.path}: splits mapping names unknown splits {unknown};"
            f" expected some of {list(SPLIT_NAMES)}"
        )
    splits = {}
    for ours, theirs in hub.splits.items():
        if theirs not in raw:
            if ours == "train":
                raise DataError(f"hub dataset {hub.path} has no split {theirs!r}; it has: {', '.join(raw)}")
            continue
        where = f"hub dataset {hub.path}, split {theirs}"
        dataset = _normalize_columns(raw[theirs], hub.text_column, hub.label_column, where)
        missing = _missing_label_rows(dataset)
        if missing and len(missing) == len(dataset) and ours != "train":
            continue  # an unlabeled split (e.g. a GLUE test set) is as good as none
        if missing:
            raise DataError(f"{where}: {len(missing)} examples have no label (first at row {missing[0]})")
        splits[ours] = dataset
    if "train" not in splits:
        raise DataError(f"hub dataset {hub.path}: no train split is mapped (splits={dict(hub.splits)})")
    return splits


# --------------------------------------------------------------------------------------------
# Carving


def check_carve(name: str, carve: Mapping[str, float], max_fraction: float = 1.0) -> None:
    """A data spec's `carve`: only validation and test, each a fraction in (0, max_fraction) of
    train, leaving some of train to train on."""
    for split, fraction in carve.items():
        if split not in ("validation", "test"):
            raise DataError(f"dataset {name!r}: carve names {split!r}; only 'validation' and 'test' can be carved")
        if not 0.0 < fraction < max_fraction:
            raise DataError(f"dataset {name!r}: carve fraction for {split!r} must be in (0, {max_fraction:g}), got {fraction}")
    if sum(carve.values()) >= 1.0:
        raise DataError(f"dataset {name!r}: carve fractions {dict(carve)} leave nothing to train on")


def _carve_missing(
    splits: dict[str, datasets.Dataset], carve: Mapping[str, float], seed: int, name: str
) -> tuple[dict[str, datasets.Dataset], list[str]]:
    """Cut missing test/validation splits out of train; returns the splits and notes for the user."""
    fractions: dict[str, float] = {}
    for split in ("test", "validation"):  # fixed order, so the carve is reproducible
        if split in splits:
            continue
        fraction = carve.get(split, DEFAULT_VALIDATION_FRACTION if split == "validation" else None)
        if fraction is not None:
            fractions[split] = fraction
    if not fractions:
        return splits, []

    splits = dict(splits)
    train = splits["train"]
    total = len(train)
    sizes = {split: max(1, round(fraction * total)) for split, fraction in fractions.items()}
    if sum(sizes.values()) >= total:
        raise DataError(f"dataset {name!r}: train has {total} examples, too few to carve {sizes} from it")
    notes = []
    for split, size in sizes.items():
        train, splits[split] = _split_off(train, size, seed)
        notes.append(f"{split} ({size} examples, {fractions[split]:.0%}) carved from train with seed {seed}")
    splits["train"] = train
    return {split: splits[split] for split in SPLIT_NAMES if split in splits}, notes


def _split_off(dataset: datasets.Dataset, size: int, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(rest, carved) with `size` examples carved, stratified by label when every class allows it.

    A dataset without a "label" column (NER sentences) gets a plain seeded split.
    """
    if "label" not in dataset.column_names:
        parts = dataset.train_test_split(test_size=size, seed=seed)
        return parts["train"], parts["test"]
    # Stratifying needs a ClassLabel column; encode a copy so "label" stays the raw string.
    with_stratum = dataset.add_column("_stratum", _column(dataset, "label")).class_encode_column("_stratum")
    try:
        parts = with_stratum.train_test_split(test_size=size, seed=seed, stratify_by_column="_stratum")
    except ValueError:  # a class too small to stratify: fall back to a plain seeded split
        parts = with_stratum.train_test_split(test_size=size, seed=seed)
    return parts["train"].remove_columns("_stratum"), parts["test"].remove_columns("_stratum")


# --------------------------------------------------------------------------------------------
# Encoding


def _column(dataset: datasets.Dataset, name: str) -> list[Any]:
    # Through the Arrow table (respecting any indices mapping left by a split): much faster than
    # iterating a `Column` object row by row.
    return dataset.with_format("arrow")[name].to_pylist()


def _sorted_labels(labels: set[str]) -> list[str]:
    """Numeric labels in numeric order ("2" before "10"), other labels in string order."""
    if all(_INTEGER.fullmatch(label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _build_vocab(counts: Counter[str], min_freq: int, max_vocab: int) -> list[str]:
    ranked = sorted((item for item in counts.items() if item[1] >= min_freq), key=lambda item: (-item[1], item[0]))
    return [PAD_TOKEN, UNK_TOKEN] + [token for token, _ in ranked[: max_vocab - 2]]


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
            texts = _column(splits[split], "text")
            token_lists[split] = [tokenize(text or "", spec.lowercase)[: spec.max_length] for text in texts]
            labels[split] = _column(splits[split], "label")
    if not labels["train"]:
        raise DataError(f"dataset {spec.name!r}: the train split is empty")
    if None in labels["train"]:
        raise DataError(f"dataset {spec.name!r}: train has examples without a label")

    counts: Counter[str] = Counter()
    for tokens in token_lists["train"]:
        counts.update(tokens)
    vocab = _build_vocab(counts, spec.min_freq, spec.max_vocab)
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
    return encode(splits, spec, source)
