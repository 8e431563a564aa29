"""Tests for trainables.data.squad: reading SQuAD v1.1 JSON files and splitting them by article."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from trainables.data import (
    DataError,
    ReadingComprehensionDataSpec,
    SquadFiles,
    align_answer,
    load_squad_splits,
    read_squad_file,
    tokenize_with_offsets,
)

DEV_FILE = "squad/dev-v1.1.json.gz"


def dev_spec(**overrides: object) -> ReadingComprehensionDataSpec:
    settings: dict = {"local": SquadFiles({"train": DEV_FILE}), "carve": {"validation": 0.1, "test": 0.1}}
    settings.update(overrides)
    return ReadingComprehensionDataSpec("squad", **settings)


def test_answers_align_to_token_spans_on_real_squad(shared_data: Path) -> None:
    path = shared_data / DEV_FILE
    if not path.exists():
        pytest.skip(f"SQuAD dev file not found at {path}")
    questions = read_squad_file(path).select(range(1500))
    exact = inexact = 0
    for row in questions:
        context = row["context"]
        _, spans = tokenize_with_offsets(context)
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
            aligned = align_answer(context, spans, start, text)
            assert aligned is not None, (row["id"], text)
            first, last, is_exact = aligned
            covered = context[spans[first, 0]:spans[last, 1]]
            if is_exact:
                assert covered == text
                exact += 1
            else:  # the answer starts or ends inside a token: the smallest cover of whole tokens
                assert text in covered and covered.startswith(context[spans[first, 0]:start]) and len(covered) > len(text)
                inexact += 1
    assert exact > 0.99 * (exact + inexact)


def test_articles_are_split_deterministically_and_never_shared(shared_data: Path) -> None:
    splits, source = load_squad_splits(dev_spec(), shared_data, seed=0)
    titles = {name: set(split["title"]) for name, split in splits.items()}
    assert (len(titles["test"]), len(titles["validation"])) == (5, 5) and len(titles["train"]) == 38
    assert not (titles["train"] & titles["validation"] or titles["train"] & titles["test"] or titles["validation"] & titles["test"])
    assert sum(len(split) for split in splits.values()) == 10_570
    again, _ = load_squad_splits(dev_spec(), shared_data, seed=0)
    assert again["test"]["id"] == splits["test"]["id"]
    other, _ = load_squad_splits(dev_spec(), shared_data, seed=1)
    assert set(other["test"]["title"]) != titles["test"]
    assert "test: 5 of 48 articles" in source and "by article with seed 0" in source


def squad_json(articles: list[dict]) -> dict:
    return {"version": "1.1", "data": articles}


def write_json(path: Path, document: object, compress: bool = False) -> Path:
    text = json.dumps(document)
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("document", "fragments"),
    [
        ("{not json", ["not a readable SQuAD v1.1 JSON file"]),
        (squad_json([{"title": "A", "paragraphs": [{"context": "x", "questions": []}]}]), ["field `data[].paragraphs[].qas` is missing", "questions"]),
        (squad_json([{"title": "A", "paragraphs": [{"context": "x y", "qas": [{"id": "1", "question": "q", "answers": [{"text": "x"}]}]}]}]),
         ["field `data[].paragraphs[].qas[].answers[].answer_start` is missing"]),
        ({"articles": []}, ["not a readable SQuAD v1.1 JSON file"]),
    ],
)
def test_malformed_files_are_refused_naming_the_file_and_field(tmp_path: Path, document: object, fragments: list[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text(document) if isinstance(document, str) else write_json(path, document)
    with pytest.raises(DataError) as caught:
        load_squad_splits(ReadingComprehensionDataSpec("bad", local=SquadFiles({"train": "bad.json"})), tmp_path, seed=0)
    message = str(caught.value)
    assert str(path) in message and "SQuAD v1.1 layout" in message
    for fragment in fragments:
        assert fragment in message
