"""Local text-classification files: `label_text`, `csv`, `tsv`, `json` and `aclimdb`, read through
`datasets` into string columns "text" and "label".

* "label_text": one example per line, `LABEL TEXT` (the label is the first whitespace-separated
  field). Lines are decoded as UTF-8, falling back to cp1252 per line (MR and SUBJ are cp1252).
  Blank lines are skipped.
* "csv" / "tsv": a header row naming the columns; tsv is read with no quoting (GLUE-style files
  hold unbalanced quotes in sentences).
* "json": JSON Lines, or one JSON list of objects.
* "aclimdb": the aclImdb v1 layout `aclImdb/{train,test}/{neg,pos}/*.txt`, from its .tar.gz
  (streamed member by member, never extracted to disk) or a folder; the label is the folder name
  and `train/unsup` is ignored. One location provides both train and test.
"""

from __future__ import annotations

import csv
import functools
import math
import re
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trainables._lazy import lazy_import
from trainables.data.common import DataError, column, decode_line, file_stamp, from_generator, one_line

datasets = lazy_import("datasets")

LOCAL_FORMATS = ("label_text", "csv", "tsv", "json", "aclimdb")

_ACLIMDB_MEMBER = re.compile(r"(?:^|/)(train|test)/(neg|pos)/[^/]+\.txt$")


@functools.cache
def string_features() -> datasets.Features:
    """The columns every split is read into: "text" and "label", both strings."""
    return datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("string")})


def read_text_files(file_format: str, paths: Mapping[str, Path], text_column: str, label_column: str) -> dict[str, datasets.Dataset]:
    """Split -> its examples, from existing local files of one of LOCAL_FORMATS.

    Args:
        file_format: One of LOCAL_FORMATS.
        paths: Split -> file; for "aclimdb", a single entry whose location holds train and test.
        text_column: Text column name (csv, tsv, json).
        label_column: Label column name (csv, tsv, json).

    Raises:
        DataError: A file cannot be parsed, lacks a column, has an example without a label, or
            holds no examples.
    """
    if file_format == "aclimdb":
        (location,) = paths.values()
        return _read_aclimdb(location)

    splits = {}
    for split, path in paths.items():
        if file_format == "label_text":
            gen_kwargs = {"path": str(path), "stamp": file_stamp(path)}
            dataset = from_generator(_label_text_examples, gen_kwargs, str(path), string_features())
        else:
            dataset = _read_table_file(file_format, path, text_column, label_column)
            missing = missing_label_rows(dataset)
            if missing:
                raise DataError(
                    f"{path}: {len(missing)} examples have no {label_column!r} value (first at data row {missing[0] + 1})"
                )
        if len(dataset) == 0:
            raise DataError(f"{path}: no examples")
        splits[split] = dataset
    return splits


def normalize_columns(dataset: datasets.Dataset, text_column: str, label_column: str, where: str) -> datasets.Dataset:
    """Keep the text and label columns, renamed "text"/"label", both as strings.

    ClassLabel ids become their names; missing texts become ""; missing labels (None, NaN, or a
    ClassLabel's -1) become None and are left to the caller to judge.
    """
    for role, name in (("text", text_column), ("label", label_column)):
        if name not in dataset.column_names:
            raise DataError(f"{where}: no {role} column {name!r}; the columns are: {', '.join(dataset.column_names)}")
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

    return dataset.map(convert, batched=True, remove_columns=dataset.column_names, features=string_features(), desc="Reading")


def missing_label_rows(dataset: datasets.Dataset) -> list[int]:
    """Rows whose "label" is None."""
    return [row for row, label in enumerate(column(dataset, "label")) if label is None]


def _label_text_examples(path: str, stamp: str) -> Iterator[dict[str, str]]:
    """Examples of a `LABEL TEXT` file. `stamp` only serves as a cache key."""
    del stamp
    # Split on b"\n" only: str.splitlines() also breaks on U+0085, which cp1252 byte 0x85
    # ("…") would turn into if decoded as latin-1, and on other Unicode separators.
    for raw in Path(path).read_bytes().split(b"\n"):
        line = decode_line(raw).strip()
        if not line:
            continue
        # A label with no text is kept as an empty example: MPQA has three such phrases, and
        # its published size (10,606) counts them. Encoding turns an empty text into <unk>.
        parts = line.split(None, 1)
        yield {"text": parts[1] if len(parts) > 1 else "", "label": parts[0]}


def _read_table_file(file_format: str, path: Path, text_column: str, label_column: str) -> datasets.Dataset:
    """A csv/tsv/json file through the `datasets` builders, normalized to text/label strings."""
    builder = "json" if file_format == "json" else "csv"
    options: dict[str, Any] = {}
    if file_format == "tsv":
        options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    try:
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as error:  # noqa: BLE001 - any parse failure is a bad file for the user
        raise DataError(f"{path}: could not be read as {file_format} ({one_line(error)})") from error
    return normalize_columns(dataset, text_column, label_column, str(path))


def _aclimdb_reviews(path: str, stamp: str) -> Iterator[dict[str, str]]:
    """Reviews of both aclImdb splits, tagged with their split. `stamp` only serves as a cache key."""
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
                    yield {"text": decode_line(handle.read()), "label": match[2], "split": match[1]}
        return
    folder = location / "aclImdb" if (location / "aclImdb").is_dir() else location
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            for review in sorted((folder / split / label).glob("*.txt")):
                yield {"text": decode_line(review.read_bytes()), "label": label, "split": split}


def _read_aclimdb(location: Path) -> dict[str, datasets.Dataset]:
    empty = f"{location}: no reviews found; expected aclImdb/{{train,test}}/{{neg,pos}}/*.txt"
    if location.is_dir():
        folder = location / "aclImdb" if (location / "aclImdb").is_dir() else location
        if not (folder / "train").is_dir():
            raise DataError(empty)
    features = datasets.Features({**string_features(), "split": datasets.Value("string")})
    try:
        reviews = from_generator(_aclimdb_reviews, {"path": str(location), "stamp": file_stamp(location)}, str(location), features)
    except DataError as error:
        if "corresponds to no data" in str(error):  # the generator yielded nothing
            raise DataError(empty) from None
        raise
    split_of_row = np.asarray(column(reviews, "split"))
    splits = {}
    for split in ("train", "test"):
        rows = np.flatnonzero(split_of_row == split)
        if len(rows):
            splits[split] = reviews.select(rows).remove_columns("split")
    if "train" not in splits:
        raise DataError(f"{location}: no training reviews found; expected aclImdb/train/{{neg,pos}}/*.txt")
    return splits
