"""Tests for trainables.data.reading_comprehension: tokens with offsets, answer alignment, windows, the hub fallback."""

from __future__ import annotations

import gzip
import json
import socket
import time
from pathlib import Path

import datasets
import numpy as np
import pytest

from trainables.data import (
    DATA_ROOT_ENV,
    DataError,
    FieldError,
    HubSquadSource,
    ReadingComprehensionData,
    ReadingComprehensionDataSpec,
    SquadFiles,
    load_reading_comprehension,
    load_squad_splits,
    tokenize_with_offsets,
)

DEV_FILE = "squad/dev-v1.1.json.gz"


def dev_spec(**overrides: object) -> ReadingComprehensionDataSpec:
    settings: dict = {"local": SquadFiles({"train": DEV_FILE}), "carve": {"validation": 0.1, "test": 0.1}}
    settings.update(overrides)
    return ReadingComprehensionDataSpec("squad", **settings)


@pytest.fixture(scope="module")
def squad(shared_data: Path) -> ReadingComprehensionData:
    if not (shared_data / DEV_FILE).exists():
        pytest.skip(f"SQuAD dev file not found at {shared_data / DEV_FILE}")
    return load_reading_comprehension(dev_spec(), shared_data, seed=0)


def test_tokens_keep_their_character_offsets() -> None:
    text = "In 1990s, Tesla's coil — \"AC\" won."
    tokens, spans = tokenize_with_offsets(text)
    assert tokens == ["In", "1990s", ",", "Tesla", "'", "s", "coil", "—", '"', "AC", '"', "won", "."]
    assert [text[start:end] for start, end in spans] == tokens


def test_the_gold_span_of_every_dev_question_reads_back_as_its_answer(squad: ReadingComprehensionData) -> None:
    split = squad.validation
    assert split.answers is not None
    with_span = np.flatnonzero(split.answer_start >= 0)
    assert len(with_span) > 0.99 * len(split)
    matches = 0
    for question in with_span:
        predicted = split.answer_text(int(question), int(split.answer_start[question]), int(split.answer_end[question]))
        # The span comes from the first gold answer that aligns: it is that answer's exact text
        # unless the answer ends inside a token.
        matches += predicted in split.answers[question]
        assert any(gold in predicted for gold in split.answers[question])
    assert matches >= len(with_span) - 5


def test_every_dev_question_is_encoded_and_every_answer_aligned(squad: ReadingComprehensionData) -> None:
    assert len(squad.train) + len(squad.validation) + len(squad.test) == 10_570
    assert "0 unalignable" in squad.source


def test_spec_validation_names_the_field() -> None:
    local = SquadFiles({"train": DEV_FILE})
    for overrides, field in [
        ({"carve": {"validation": 0.5}}, "carve.validation"),
        ({"max_examples": {"dev": 10}}, "max_examples.dev"),
        ({"max_examples": {"train": 0}}, "max_examples.train"),
        ({"max_vocab": 2}, "max_vocab"),
        ({"max_context_tokens": 0}, "max_context_tokens"),
    ]:
        with pytest.raises(FieldError) as caught:
            ReadingComprehensionDataSpec("squad", local=local, **overrides)  # type: ignore[arg-type]
        assert caught.value.field == field, overrides
    with pytest.raises(FieldError, match="no `train` entry"):
        HubSquadSource(splits={"validation": "validation"})


def test_long_contexts_are_windowed_around_the_answer_in_train_and_truncated_in_dev(shared_data: Path) -> None:
    data = load_reading_comprehension(dev_spec(max_context_tokens=60, max_examples={"train": 800, "validation": 300}), shared_data, seed=0)
    train = data.train
    paragraph_lengths = np.diff(train.context_offsets)[train.paragraph]
    windowed = train.window_start > 0
    assert windowed.any() and (paragraph_lengths[windowed] > 60).all()
    spans = train.answer_start >= 0
    assert (train.answer_start[spans] >= train.window_start[spans]).all()
    assert (train.answer_end[spans] < train.window_start[spans] + 60).all()
    assert (train.window_start[spans] + 60 <= np.maximum(paragraph_lengths[spans], 60)).all()
    dev = data.validation
    assert (dev.window_start == 0).all() and (dev.answer_end[dev.answer_start >= 0] < 60).all()
    beyond = int((dev.answer_start < 0).sum())
    assert beyond > 1 and f"{beyond} questions with the answer beyond 60 tokens" in data.source
    assert "windowed" in data.source and "truncated" in data.source


def squad_json(articles: list[dict]) -> dict:
    return {"version": "1.1", "data": articles}


def article(title: str, context: str, qas: list[tuple[str, str, int]]) -> dict:
    return {
        "title": title,
        "paragraphs": [{"context": context, "qas": [{"id": f"{title}-{i}", "question": q, "answers": [{"text": t, "answer_start": s}]} for i, (q, t, s) in enumerate(qas)]}],
    }


def write_json(path: Path, document: object, compress: bool = False) -> Path:
    text = json.dumps(document)
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_unalignable_answers_are_counted_not_silently_dropped(tmp_path: Path) -> None:
    articles = [
        article("A", "Paris is the capital of France.", [("What is the capital?", "Paris", 0), ("Which country?", "Spain", 24)]),
        article("B", "Tesla was born in 1856.", [("When?", "1856", 18)]),
    ]
    write_json(tmp_path / "train.json.gz", squad_json(articles), compress=True)
    write_json(tmp_path / "dev.json", squad_json([article("C", "Oslo is cold.", [("What is cold?", "Oslo", 0)])]))
    spec = ReadingComprehensionDataSpec("toy", local=SquadFiles({"train": "train.json.gz", "validation": "dev.json"}))
    data = load_reading_comprehension(spec, tmp_path)
    assert data.train.answer_start.tolist() == [0, -1, 4]
    assert "train: 3 questions, 3 answers (2 exact token spans, 0 inside tokens, 1 unalignable)" in data.source
    assert "1 question left out of training" in data.source
    assert data.validation.answer_text(0, 0, 0) == "Oslo"


def test_unreachable_hub_fails_fast_listing_the_local_files_that_would_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: pytest.fail("no load after a failed probe"))
    spec = ReadingComprehensionDataSpec("squad", hub=HubSquadSource("squad"), local=SquadFiles({"train": "squad/train-v1.1.json", "test": DEV_FILE}))
    started = time.monotonic()
    with pytest.raises(DataError) as caught:
        load_squad_splits(spec, tmp_path, seed=0)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert str(tmp_path.resolve() / "squad/train-v1.1.json") in message and "SQuAD JSON" in message
    assert "--data-root" in message and DATA_ROOT_ENV in message
    assert any("hub:" in line and "squad" in line and "unreachable" in line for line in message.splitlines())


def test_the_hub_is_only_asked_when_local_files_are_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_json(tmp_path / "train.json", squad_json([article(t, "Paris is big.", [("What?", "Paris", 0)]) for t in "ABCDEFGHIJ"]))
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: pytest.fail("hub must not be used") if args[0] == "squad" else real_load(*args, **kwargs))
    spec = ReadingComprehensionDataSpec("toy", hub=HubSquadSource(), local=SquadFiles({"train": "train.json"}))
    splits, source = load_squad_splits(spec, tmp_path, seed=0)
    assert source.startswith("local files") and len(splits["validation"]) == 1 and len(splits["train"]) == 9


real_load = datasets.load_dataset
