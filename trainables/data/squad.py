"""SQuAD v1.1 JSON: the official nested layout (plain or .gz), and the hub's `squad` dataset.

`read_squad_file` reads `{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}]}]}]}]}` through `datasets.load_dataset("json", field="data")`
and flattens it to one row per question: id, title, context, question, answers {text,
answer_start} (the columns of the hub's `squad`). A malformed file is refused naming the file and
the first field of the layout it lacks. `split_by_article` carves splits out of such rows by
article. `trainables.data.reading_comprehension` loads and encodes them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainables._lazy import lazy_import
from trainables.data.common import DataError, one_line, select_hub_splits
from trainables.data.section import Section, check_split_names

datasets = lazy_import("datasets")

_EXPECTED_LAYOUT = (
    'the SQuAD v1.1 layout {"data": [{"title", "paragraphs": [{"context", "qas": '
    '[{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}'
)


@functools.cache
def squad_features() -> datasets.Features:
    """The columns of one row per question: id, title, context, question, answers."""
    sequence = getattr(datasets, "List", None) or datasets.Sequence
    return datasets.Features({
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {"text": sequence(datasets.Value("string")), "answer_start": sequence(datasets.Value("int64"))},
    })


@dataclass(frozen=True)
class SquadFiles:
    """Local SQuAD v1.1 JSON files (plain or gzipped), read through `datasets`.

    Attributes:
        files: Our split name ("train", "validation", "test") -> path, relative to the data root
            (absolute paths need no data root). "train" is required; missing splits are carved
            from it by article.
    """

    files: Mapping[str, str]

    def __post_init__(self) -> None:
        check_split_names("files", self.files)

    @classmethod
    def from_section(cls, section: Section) -> SquadFiles:
        """A reading-comprehension study file's `data.local` section (`format: squad`)."""
        section.check_keys(("format", "files"))
        section.string("format", "squad", choices=("squad",))
        return section.build(cls, files=section.string_map("files", required=True))


@dataclass(frozen=True)
class HubSquadSource:
    """A SQuAD-format dataset on the hub (columns id, title, context, question, answers).

    Attributes:
        path: Hub dataset id ("squad").
        name: Dataset config name, if any.
        splits: Our split name -> hub split name; "train" is required. "squad" has train and
            validation only.
    """

    path: str = "squad"
    name: str | None = None
    splits: Mapping[str, str] = field(default_factory=lambda: {"train": "train", "validation": "validation"})

    def __post_init__(self) -> None:
        check_split_names("splits", self.splits)

    @classmethod
    def from_section(cls, section: Section) -> HubSquadSource:
        """A reading-comprehension study file's `data.hub` section."""
        section.check_keys(("path", "name", "splits"))
        return section.build(
            cls,
            path=section.string("path", cls.path),
            name=section.optional_string("name"),
            splits=section.string_map("splits") or {"train": "train", "validation": "validation"},
        )


def _flatten_articles(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Articles -> one row per question (the hub's `squad` columns)."""
    out: dict[str, list[Any]] = {"id": [], "title": [], "context": [], "question": [], "answers": []}
    for title, paragraphs in zip(batch["title"], batch["paragraphs"]):
        for paragraph in paragraphs or []:
            for qa in paragraph["qas"] or []:
                answers = qa["answers"] or []
                out["id"].append(qa["id"])
                out["title"].append(title or "")
                out["context"].append(paragraph["context"] or "")
                out["question"].append(qa["question"] or "")
                out["answers"].append({"text": [a["text"] or "" for a in answers], "answer_start": [a["answer_start"] for a in answers]})
    return out


def _check_layout(features: datasets.Features, path: Path) -> None:
    """Names the first field of the SQuAD layout the file lacks."""

    def fields_of(feature: Any) -> Mapping[str, Any] | None:
        inner = getattr(feature, "feature", feature)  # a list of structs
        return inner if isinstance(inner, Mapping) else None

    required = {
        "data[]": ("title", "paragraphs"),
        "data[].paragraphs[]": ("context", "qas"),
        "data[].paragraphs[].qas[]": ("id", "question", "answers"),
        "data[].paragraphs[].qas[].answers[]": ("text", "answer_start"),
    }
    level: Mapping[str, Any] | None = features
    for where, keys in required.items():
        if level is None:
            raise DataError(f"{path}: `{where}` is not a list of objects; expected {_EXPECTED_LAYOUT}")
        for key in keys:
            if key not in level:
                present = ", ".join(level) or "none"
                raise DataError(f"{path}: field `{where}.{key}` is missing (fields there: {present}); expected {_EXPECTED_LAYOUT}")
        child = {"data[]": "paragraphs", "data[].paragraphs[]": "qas", "data[].paragraphs[].qas[]": "answers"}.get(where)
        level = fields_of(level[child]) if child else None


def read_squad_file(path: Path) -> datasets.Dataset:
    """One SQuAD v1.1 JSON file (plain or .gz) as one row per question; DataError if malformed."""
    try:
        articles = datasets.load_dataset("json", data_files=str(path), field="data", split="train")
    except Exception as error:  # noqa: BLE001 - the library's errors for bad JSON vary; one line for the user
        raise DataError(f"{path}: not a readable SQuAD v1.1 JSON file ({one_line(error)}); expected {_EXPECTED_LAYOUT}") from None
    _check_layout(articles.features, path)
    start_type = articles.features["paragraphs"].feature["qas"].feature["answers"].feature["answer_start"]
    if getattr(start_type, "dtype", "") not in ("int64", "int32"):
        raise DataError(f"{path}: field `data[].paragraphs[].qas[].answers[].answer_start` holds {start_type}; a character offset (integer) is expected")
    return articles.map(
        _flatten_articles, batched=True, batch_size=8, remove_columns=articles.column_names, features=squad_features(), desc="Flattening",
    )


def squad_hub_splits(hub: HubSquadSource, loaded: datasets.DatasetDict) -> dict[str, datasets.Dataset]:
    """The hub splits `hub.splits` maps, with the SQuAD columns only.

    Raises:
        DataError: The train split is missing, or a split lacks a SQuAD column.
    """

    def prepare(ours: str, theirs: str, dataset: datasets.Dataset) -> datasets.Dataset:
        missing = [name for name in squad_features() if name not in dataset.column_names]
        if missing:
            raise DataError(
                f"hub dataset {hub.path}, split {theirs}: no column(s) {missing}; the columns are: {', '.join(dataset.column_names)}"
            )
        return dataset.select_columns(list(squad_features()))

    return select_hub_splits(hub, loaded, prepare)


def split_by_article(dataset: datasets.Dataset, fractions: Mapping[str, float], seed: int, name: str) -> tuple[dict[str, datasets.Dataset], str]:
    """Carves `fractions` (split -> fraction of articles) out of `dataset` by title; the rule is in `trainables.data.reading_comprehension`."""
    titles = dataset.with_format("arrow")["title"].to_numpy(zero_copy_only=False)
    order_of_first, article_of_row = np.unique(titles, return_index=True, return_inverse=True)[1:]
    # Articles numbered in order of first appearance, so the split does not depend on title spelling.
    rank = np.empty(len(order_of_first), dtype=np.int64)
    rank[np.argsort(order_of_first, kind="stable")] = np.arange(len(order_of_first))
    article_of_row = rank[article_of_row]
    count = len(order_of_first)
    permutation = np.random.default_rng(seed).permutation(count)
    sizes = {split: max(1, round(fractions[split] * count)) for split in ("test", "validation") if split in fractions}
    if sum(sizes.values()) >= count:
        raise DataError(f"dataset {name!r}: train has {count} articles, too few to carve {sizes} articles from it by article")
    assigned = np.zeros(count, dtype=np.int8)  # 0 train, 1 validation, 2 test
    position = 0
    for split, size in sizes.items():
        assigned[permutation[position:position + size]] = 1 if split == "validation" else 2
        position += size
    row_split = assigned[article_of_row]
    parts = {"train": dataset.select(np.flatnonzero(row_split == 0))}
    notes = []
    for split, size in sizes.items():
        parts[split] = dataset.select(np.flatnonzero(row_split == (1 if split == "validation" else 2)))
        notes.append(f"{split}: {size} of {count} articles ({len(parts[split])} questions) carved from train by article with seed {seed}")
    return parts, "; ".join(notes)
