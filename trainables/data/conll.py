"""CoNLL column files: one token per line, columns separated by whitespace, a blank line between
sentences, `-DOCSTART-` lines skipped.

`ConllSource` names the files and their columns and tag scheme; `read_conll` yields a file's
sentences; `read_conll_split` reads one file through `datasets` (cached by file size and mtime)
with its tags converted to the scheme the model trains in. `trainables.data.ner` loads and encodes
NER datasets from these files or the hub.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from trainables._lazy import lazy_import
from trainables.data.common import DataError, decode_line, file_stamp, from_generator
from trainables.data.section import FieldError, Section, check_choice, check_split_names
from trainables.data.tag_schemes import SCHEMES, TagError, convert_scheme

datasets = lazy_import("datasets")

DOCSTART = "-DOCSTART-"


@functools.cache
def ner_features() -> datasets.Features:
    """The columns every NER split is read into: "tokens" and "tags", lists of strings."""
    # `datasets.List` is the 4.x+ name; `Sequence` builds the same feature on 3.x.
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
        check_split_names("files", self.files)
        check_choice("scheme", self.scheme, SCHEMES)
        for key in ("token_column", "tag_column"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise FieldError(key, f"{value!r} is not a column index (0 = first column, -1 = last)")
        if self.token_column == self.tag_column:
            raise FieldError("tag_column", f"CoNLL token and tag columns are the same column ({self.token_column})")

    @classmethod
    def from_section(cls, section: Section) -> ConllSource:
        """A NER study file's `data.local` section (`format: conll`)."""
        section.check_keys(("format", "files", "scheme", "token_column", "tag_column"))
        section.string("format", "conll", choices=("conll",))
        return section.build(
            cls,
            files=section.string_map("files", required=True),
            scheme=section.string("scheme", cls.scheme),
            token_column=section.data.get("token_column", cls.token_column),
            tag_column=section.data.get("tag_column", cls.tag_column),
        )


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
    for _, tokens, tags in _sentences(Path(path), token_column, tag_column):
        yield {"tokens": tokens, "tags": tags}


def read_conll_split(local: ConllSource, path: Path, target: str) -> datasets.Dataset:
    """One CoNLL file as a `datasets.Dataset` ("tokens", "tags"), tags converted to `target`.

    Raises:
        DataError: The file is malformed or holds no sentence, or a tag does not fit
            `local.scheme` (the message names the file and the line).
    """
    gen_kwargs = {
        "path": str(path),
        "stamp": file_stamp(path),
        "token_column": local.token_column,
        "tag_column": local.tag_column,
        "scheme": local.scheme,
        "target": target,
    }
    return from_generator(_examples, gen_kwargs, str(path), ner_features())


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # only then pay for line-by-line decoding
        text = "\n".join(decode_line(line) for line in raw.split(b"\n"))
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


def _sentences(path: Path, token_column: int, tag_column: int) -> Iterator[tuple[int, list[str], list[str]]]:
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


def _examples(path: str, stamp: str, token_column: int, tag_column: int, scheme: str, target: str) -> Iterator[dict[str, list[str]]]:
    """Sentences of a CoNLL file with tags converted to `target`. `stamp` only serves as a cache key."""
    del stamp
    found = False
    for start, tokens, tags in _sentences(Path(path), token_column, tag_column):
        try:
            converted = convert_scheme(tags, scheme, target)
        except TagError as error:
            # A sentence's tokens are on consecutive lines.
            raise DataError(f"{path}, line {start + (error.position or 0)}: {error}") from None
        found = True
        yield {"tokens": tokens, "tags": converted}
    if not found:
        raise DataError(f"{path}: no sentences")
