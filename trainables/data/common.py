"""What every data source shares: `DataError`, finding the files (data root, hub fallback, hub
probe), hub split selection, carving and vocabularies.

Every loader follows the same path: `read_local_or_hub` reads the local files when they all exist,
else the hub dataset (after a quick reachability probe), else raises a `DataError` saying which
files were expected where; `carve_missing` cuts the splits the source lacks out of train.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from trainables._lazy import lazy_import

DATA_ROOT_ENV = "SEARCH_DATA_ROOT"
SPLIT_NAMES = ("train", "validation", "test")
# Used when validation is missing and the spec gives no carve fraction for it.
DEFAULT_VALIDATION_FRACTION = 0.1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
PAD_ID = 0
UNK_ID = 1
# Seconds allowed for the hub connectivity probe (see `hub_unreachable_reason`).
HUB_PROBE_TIMEOUT_S = 3.0

datasets = lazy_import("datasets")


class DataError(Exception):
    """A dataset could not be read; the message is for the user (names files, fields, what was expected)."""


# --------------------------------------------------------------------------------------------
# Finding the files: data root, local paths, hub fallback, the not-found message


class FileSource(Protocol):
    """What `read_local_or_hub` needs of a local source."""

    @property
    def files(self) -> Mapping[str, str]: ...


class HubLocation(Protocol):
    """What `read_local_or_hub` and `select_hub_splits` need of a hub source."""

    @property
    def path(self) -> str: ...

    @property
    def name(self) -> str | None: ...

    @property
    def splits(self) -> Mapping[str, str]: ...


def resolve_data_root(data_root: str | os.PathLike | None) -> Path | None:
    """`data_root`, else $SEARCH_DATA_ROOT, as an absolute path; None when neither is set."""
    if data_root is None:
        data_root = os.environ.get(DATA_ROOT_ENV) or None
    return Path(data_root).expanduser().resolve() if data_root is not None else None


def _local_paths(local: FileSource, root: Path | None) -> dict[str, Path | None]:
    """Split key -> absolute path; None for a relative path when no data root is set."""
    paths: dict[str, Path | None] = {}
    for key, relative in local.files.items():
        path = Path(relative).expanduser()
        if path.is_absolute():
            paths[key] = path
        else:
            paths[key] = root / path if root is not None else None
    return paths


def _describe_path(key: str, path: Path | None, local: FileSource) -> str:
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


def missing_data_message(
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


# Reads the splits and returns them with a suffix for the source line ("" or "; ...").
LocalReader = Callable[[dict[str, Path]], tuple[dict[str, Any], str]]
HubReader = Callable[[Any], tuple[dict[str, Any], str]]


def read_local_or_hub(
    name: str,
    local: FileSource | None,
    hub: HubLocation | None,
    data_root: str | os.PathLike | None,
    *,
    local_format: str,
    read_local: LocalReader,
    read_hub: HubReader,
) -> tuple[dict[str, datasets.Dataset], str]:
    """A dataset's splits from its local files when every one exists, else from the hub.

    Relative paths are resolved against the data root (`data_root`, else $SEARCH_DATA_ROOT). The
    hub is asked only when the local files are not all there, after a quick reachability probe.

    Args:
        name: Dataset name for messages.
        local: The local files, or None.
        hub: The hub dataset, or None.
        data_root: Directory relative paths are resolved against; None to use $SEARCH_DATA_ROOT.
        local_format: The local files' format, named in the not-found message.
        read_local: (split -> existing path) -> (splits, source-line suffix).
        read_hub: the loaded `DatasetDict` -> (splits, source-line suffix).

    Returns:
        The splits and one line saying where they came from.

    Raises:
        DataError: Neither source could be read; the message lists the files expected, the data
            root and how to set it, and why the hub failed.
    """
    root = resolve_data_root(data_root)
    missing_local: list[str] = []
    if local is not None:
        paths = _local_paths(local, root)
        missing_local = [_describe_path(key, path, local) for key, path in paths.items() if path is None or not path.exists()]
        if not missing_local:
            splits, note = read_local(paths)  # type: ignore[arg-type]  # all resolved here
            return splits, _describe_local_source(root, paths) + note
    hub_error: str | None = None
    if hub is not None:
        try:
            loaded = _fetch_hub(hub)
        except _HubUnavailable as error:
            hub_error = str(error)
        else:
            splits, note = read_hub(loaded)
            return splits, f"hub dataset {_hub_label(hub)}{note}"
    raise DataError(
        missing_data_message(name, local_format if local is not None else None, root, data_root, missing_local, hub_error)
    )


# --------------------------------------------------------------------------------------------
# Reading helpers


def file_stamp(path: Path) -> str:
    """Size and mtime: part of the generator cache key, so an edited file is read again.

    For a folder this only sees entries added or removed at its top level; edit an aclImdb
    folder's reviews in place and the `datasets` cache would keep the old text.
    """
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def decode_line(raw: bytes) -> str:
    # Some benchmark files (MR, SUBJ) are cp1252, not UTF-8; decide per line so one bad byte
    # does not garble a whole UTF-8 file.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def from_generator(generator: Any, gen_kwargs: dict[str, Any], where: str, features: datasets.Features) -> datasets.Dataset:
    """`Dataset.from_generator`, with our DataError surfacing instead of the library's wrapper."""
    try:
        return datasets.Dataset.from_generator(generator, features=features, gen_kwargs=gen_kwargs)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - datasets wraps generator errors; unwrap ours
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, DataError):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        raise DataError(f"{where}: could not be read ({one_line(error)})") from error


def column(dataset: datasets.Dataset, name: str) -> list[Any]:
    """A column as a list. Through the Arrow table (respecting any indices mapping left by a split):
    much faster than iterating a `Column` object row by row."""
    return dataset.with_format("arrow")[name].to_pylist()


# --------------------------------------------------------------------------------------------
# Hub


class _HubUnavailable(Exception):
    """The hub dataset could not be loaded; the message is one line."""


def hub_unreachable_reason() -> str | None:
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


def _hub_label(hub: HubLocation) -> str:
    return hub.path + (f" (config {hub.name})" if hub.name else "")


def _fetch_hub(hub: HubLocation) -> datasets.DatasetDict:
    label = _hub_label(hub)
    unreachable = hub_unreachable_reason()
    if unreachable is not None:
        raise _HubUnavailable(
            f"could not load {label}: the hub is unreachable: {unreachable} "
            "(to use a copy in the local datasets cache, set HF_HUB_OFFLINE=1)"
        )
    try:
        loaded = datasets.load_dataset(hub.path, hub.name)
    except Exception as error:  # noqa: BLE001 - reported to the user in one line
        raise _HubUnavailable(f"could not load {label}: {one_line(error)}") from error
    if not isinstance(loaded, datasets.DatasetDict):
        raise _HubUnavailable(f"could not load {label}: expected named splits, got {type(loaded).__name__}")
    return loaded


def select_hub_splits(
    hub: HubLocation,
    loaded: datasets.DatasetDict,
    prepare: Callable[[str, str, datasets.Dataset], datasets.Dataset | None],
) -> dict[str, datasets.Dataset]:
    """Our split name -> the hub split `hub.splits` maps it to, passed through `prepare`.

    `prepare(ours, theirs, dataset)` normalizes the columns and checks the rows; it returns None
    for a split to treat as missing (e.g. a test split without labels). A mapped hub split that
    does not exist is missing too, except train.
    """
    splits = {}
    for ours, theirs in hub.splits.items():
        if theirs not in loaded:
            if ours == "train":
                raise DataError(f"hub dataset {hub.path} has no split {theirs!r}; it has: {', '.join(loaded)}")
            continue
        prepared = prepare(ours, theirs, loaded[theirs])
        if prepared is not None:
            splits[ours] = prepared
    return splits


# --------------------------------------------------------------------------------------------
# Carving


def fractions_to_carve(present: Sequence[str], carve: Mapping[str, float]) -> dict[str, float]:
    """Split -> fraction of train, for the carvable splits not `present`: the spec's fraction, or
    the default for validation. Test comes first: the carve order is part of reproducibility."""
    fractions = {}
    for split in ("test", "validation"):
        if split not in present:
            fraction = carve.get(split, DEFAULT_VALIDATION_FRACTION if split == "validation" else None)
            if fraction is not None:
                fractions[split] = fraction
    return fractions


def carve_missing(
    splits: dict[str, datasets.Dataset], carve: Mapping[str, float], seed: int, name: str
) -> tuple[dict[str, datasets.Dataset], list[str]]:
    """Cut missing test/validation splits out of train, by example; the splits and notes for the user."""
    fractions = fractions_to_carve(list(splits), carve)
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
    with_stratum = dataset.add_column("_stratum", column(dataset, "label")).class_encode_column("_stratum")
    try:
        parts = with_stratum.train_test_split(test_size=size, seed=seed, stratify_by_column="_stratum")
    except ValueError:  # a class too small to stratify: fall back to a plain seeded split
        parts = with_stratum.train_test_split(test_size=size, seed=seed)
    return parts["train"].remove_columns("_stratum"), parts["test"].remove_columns("_stratum")


# --------------------------------------------------------------------------------------------
# Vocabularies


def build_vocab(counts: Counter[str], min_freq: int, max_vocab: int) -> list[str]:
    """"<pad>", "<unk>", then tokens seen at least `min_freq` times, most frequent first (ties by
    token, for determinism), `max_vocab` entries in all."""
    ranked = sorted((item for item in counts.items() if item[1] >= min_freq), key=lambda item: (-item[1], item[0]))
    return [PAD_TOKEN, UNK_TOKEN] + [token for token, _ in ranked[: max_vocab - 2]]


def char_codes(tokens: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(code points of every token's first `max_length` characters, concatenated; characters per token)."""
    cut = [token[:max_length] for token in tokens]
    lengths = np.fromiter(map(len, cut), dtype=np.int64, count=len(cut))
    # One UTF-32 buffer: every code point as a uint32, with no per-character Python work.
    codes = np.frombuffer("".join(cut).encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    return codes, lengths


class CharVocabulary:
    """Character vocabulary over the code points seen in train, with a vectorized lookup.

    `chars` is "<pad>", "<unk>", then the characters, most frequent first (ties by code point).
    """

    def __init__(self, train_codes: np.ndarray) -> None:
        values, counts = np.unique(train_codes, return_counts=True)
        order = np.lexsort((values, -counts))
        self.chars = [PAD_TOKEN, UNK_TOKEN] + [chr(value) for value in values[order]]
        self._values = values
        self._ids = np.empty(len(values), dtype=np.int32)
        self._ids[order] = np.arange(2, len(values) + 2, dtype=np.int32)

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """int32 character ids of `codes`; "<unk>" for characters not seen in train."""
        if not len(self._values):
            return np.full(len(codes), UNK_ID, dtype=np.int32)
        position = np.minimum(np.searchsorted(self._values, codes), len(self._values) - 1)
        return np.where(self._values[position] == codes, self._ids[position], UNK_ID).astype(np.int32)
