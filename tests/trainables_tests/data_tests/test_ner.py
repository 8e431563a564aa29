"""Tests for trainables.data.ner: loading NER data (CoNLL files or the hub) and encoding it."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import pytest

from trainables.data import (
    DATA_ROOT_ENV,
    ConllSource,
    DataError,
    EncodedSentences,
    FieldError,
    HubNerSource,
    NerData,
    NerDataSpec,
    common,
    encode_ner,
    load_ner,
    load_ner_splits,
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _conll(sentences: list[list[tuple[str, str]]], separator: str = " ") -> str:
    return "\n\n".join("\n".join(f"{token}{separator}{tag}" for token, tag in sentence) for sentence in sentences) + "\n"


def _entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) spans of well-formed IOB2 tags."""
    spans: list[tuple[str, int, int]] = []
    for index, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append((tag[2:], index, index + 1))
        elif tag.startswith("I-"):
            kind, start, _ = spans[-1]
            spans[-1] = (kind, start, index + 1)
    return spans


def _assert_valid_iob2(tags: list[str]) -> None:
    previous = "O"
    for tag in tags:
        assert tag == "O" or tag[:2] in ("B-", "I-"), tags
        if tag.startswith("I-"):
            assert previous != "O" and previous[2:] == tag[2:], tags
        previous = tag


# --------------------------------------------------------------------------------------------
# Loading


def _toy_files(folder: Path) -> dict[str, str]:
    train = [
        [("EU", "I-ORG"), ("rejects", "O"), ("German", "I-MISC"), ("call", "O")],
        [("Peter", "I-PER"), ("Blackburn", "I-PER"), ("met", "O"), ("Ann", "B-PER")],
        [("the", "O"), ("EU", "I-ORG")],
    ]
    dev = [[("The", "O"), ("Commission", "I-ORG"), ("said", "O")], [("Ann", "I-PER")]]
    _write(folder / "train.txt", _conll(train))
    _write(folder / "dev.txt", _conll(dev, separator="\t"))
    return {"train": "train.txt", "validation": "dev.txt"}


def test_load_converts_to_the_target_scheme(tmp_path: Path) -> None:
    spec = NerDataSpec("toy", local=ConllSource(_toy_files(tmp_path), scheme="iob1"), scheme="bioes")
    splits, source = load_ner_splits(spec, tmp_path, seed=0)
    assert sorted(splits) == ["train", "validation"] and splits["train"].column_names == ["tokens", "tags"]
    assert splits["train"]["tags"][1] == ["B-PER", "E-PER", "O", "S-PER"]
    assert source.startswith(f"local files under {tmp_path.resolve()}: train.txt, dev.txt") and "iob1 -> bioes" in source


def test_encoding_uses_train_only_vocabularies_and_tags(tmp_path: Path) -> None:
    spec = NerDataSpec("toy", local=ConllSource(_toy_files(tmp_path), scheme="iob1"), max_word_length=4)
    data = load_ner(spec, tmp_path)

    assert isinstance(data, NerData) and isinstance(data.train, EncodedSentences) and data.test is None
    assert data.tags == ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"] and data.scheme == "iob2"
    assert data.words[:4] == ["<pad>", "<unk>", "eu", "ann"]  # by frequency, then alphabetically
    assert data.chars[:2] == ["<pad>", "<unk>"] and "E" in data.chars and "T" not in data.chars  # "The" is dev-only
    assert len(data.train) == 3 and len(data.validation) == 2
    np.testing.assert_array_equal(data.train.offsets, [0, 4, 8, 10])
    np.testing.assert_array_equal(data.train.lengths(), [4, 4, 2])
    assert data.train.words.dtype == np.int32 and data.train.offsets.dtype == np.int64
    assert data.train.chars.dtype == np.int32 and data.train.char_offsets.dtype == np.int64
    assert data.train.tags.dtype == np.int32 and data.train.words.shape == data.train.tags.shape

    assert [data.words[i] for i in data.validation.words] == ["the", "<unk>", "<unk>", "ann"]  # lowercased words
    assert data.tag_names(data.train.tags[4:8]) == ["B-PER", "I-PER", "O", "B-PER"]
    assert data.tag_names(data.validation.tags) == ["O", "B-ORG", "O", "B-PER"]

    # Characters keep their case, at most max_word_length per token; unseen ones are <unk>.
    offsets = data.validation.char_offsets
    assert len(offsets) == len(data.validation.words) + 1 and offsets[-1] == len(data.validation.chars)
    commission = data.validation.chars[offsets[1] : offsets[2]]
    assert [data.chars[i] for i in commission] == ["<unk>", "<unk>", "m", "m"]  # no "C" or "o" in train
    assert "k" not in data.chars  # only past the 4th character of "Blackburn": counted as it is encoded
    assert np.diff(data.train.char_offsets).min() >= 1 and np.diff(data.train.char_offsets).max() == 4


def test_dev_tag_unseen_in_train_is_refused(tmp_path: Path) -> None:
    files = _toy_files(tmp_path)
    _write(tmp_path / "dev.txt", "Paris B-LOC\n")
    spec = NerDataSpec("toy", local=ConllSource(files))
    with pytest.raises(DataError, match=r"validation split has tags not seen in train: 'B-LOC'"):
        load_ner(spec, tmp_path)


def test_missing_validation_is_carved_from_train_with_the_seed(tmp_path: Path) -> None:
    sentences = [[(f"w{i}", "O"), ("x", "B-PER")] for i in range(50)]
    _write(tmp_path / "train.txt", _conll(sentences))
    spec = NerDataSpec("toy", local=ConllSource({"train": "train.txt"}))
    splits, source = load_ner_splits(spec, tmp_path, seed=1)
    again, _ = load_ner_splits(spec, tmp_path, seed=1)
    assert (len(splits["train"]), len(splits["validation"])) == (45, 5) and "test" not in splits
    assert splits["validation"]["tokens"] == again["validation"]["tokens"]
    assert "validation (5 examples, 10%) carved from train with seed 1" in source
    data = encode_ner(splits, spec, source)
    assert len(data.validation) == 5 and data.validation.lengths().tolist() == [2] * 5


def test_data_root_from_environment_and_edited_files_are_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "train.txt", "a O\n\nb B-PER\n")
    _write(tmp_path / "dev.txt", "a O\n")
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    spec = NerDataSpec("toy", local=ConllSource({"train": "train.txt", "validation": "dev.txt"}))
    assert len(load_ner(spec).train) == 2

    _write(tmp_path / "train.txt", "a O\n\nb B-PER\n\nc O\n")
    os.utime(tmp_path / "train.txt", ns=(time.time_ns(), time.time_ns() + 10**9))  # a different mtime for sure
    assert len(load_ner(spec).train) == 3


@pytest.mark.parametrize(
    ("build", "field", "fragment"),
    [
        (lambda: NerDataSpec("x"), "hub", "a dataset needs `hub`"),
        (lambda: NerDataSpec("x", hub=HubNerSource("conll2003"), scheme="iob1"), "scheme", "'iob1' is not accepted; accepted: iob2, bioes"),
        (lambda: NerDataSpec("x", hub=HubNerSource("conll2003"), max_vocab=2), "max_vocab", "it must be an integer >= 3"),
        (lambda: HubNerSource("conll2003", scheme="bilou"), "scheme", "accepted: iob1, iob2, bioes"),
        (lambda: HubNerSource("conll2003", splits={"train": "train", "dev": "dev"}), "splits.dev", "unknown split"),
    ],
)
def test_spec_validation_names_the_field(build: object, field: str, fragment: str) -> None:
    with pytest.raises(FieldError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field and fragment in caught.value.message


# --------------------------------------------------------------------------------------------
# Hub


def test_hub_class_labels_become_names_and_validation_is_carved(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["O", "B-PER", "I-PER", "B-creative-work", "I-creative-work"]
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "words": datasets.Sequence(datasets.Value("string")),
            "labels": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    rows = [(["Ann", "Lee", "wrote", "Dune", "Two"], [1, 2, 0, 3, 4]), ([], []), (["hi"], [0])] * 10
    train = datasets.Dataset.from_dict(
        {"id": [str(i) for i in range(len(rows))], "words": [r[0] for r in rows], "labels": [r[1] for r in rows]},
        features=features,
    )
    fake = datasets.DatasetDict({"train": train, "test": train.select(range(3))})
    monkeypatch.setattr(common, "hub_unreachable_reason", lambda: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None: fake)
    hub = HubNerSource("wnut_17", tokens_column="words", tags_column="labels")
    spec = NerDataSpec("wnut17", hub=hub, local=ConllSource({"train": "absent/train.txt"}), scheme="bioes")

    splits, source = load_ner_splits(spec, None, seed=0)

    assert sorted(splits) == ["test", "train", "validation"] and splits["train"].column_names == ["tokens", "tags"]
    assert (len(splits["train"]), len(splits["validation"]), len(splits["test"])) == (18, 2, 2)  # empty ones dropped
    assert splits["test"]["tags"][0] == ["B-PER", "E-PER", "O", "B-creative-work", "E-creative-work"]
    assert source.startswith("hub dataset wnut_17; tags iob2 -> bioes; 10 empty sentences dropped from train")
    assert "validation (2 examples, 10%) carved" in source


def test_unreachable_hub_fails_fast_listing_the_expected_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: pytest.fail("no load after a failed probe"))
    local = ConllSource({"train": "conll2003/eng.train", "validation": "conll2003/eng.testa"}, scheme="iob1")
    spec = NerDataSpec("conll2003", hub=HubNerSource("conll2003"), local=local)

    started = time.monotonic()
    with pytest.raises(DataError) as caught:
        load_ner_splits(spec, tmp_path, seed=0)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert (
        str(tmp_path.resolve() / "conll2003/eng.train") in message and str(tmp_path.resolve() / "conll2003/eng.testa") in message
    )
    assert "--data-root" in message and DATA_ROOT_ENV in message
    hub_lines = [line for line in message.splitlines() if "hub:" in line]
    assert len(hub_lines) == 1 and "conll2003" in hub_lines[0] and "unreachable" in hub_lines[0]


def test_local_files_are_preferred_to_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: pytest.fail("hub must not be used"))
    spec = NerDataSpec("toy", hub=HubNerSource("x/y"), local=ConllSource(_toy_files(tmp_path)))
    _, source = load_ner_splits(spec, tmp_path, seed=0)
    assert source.startswith("local files")


# --------------------------------------------------------------------------------------------
# Real data


CONLL = NerDataSpec(
    "conll2003",
    hub=HubNerSource("conll2003"),
    local=ConllSource(
        {"train": "conll2003/eng.train", "validation": "conll2003/eng.testa", "test": "conll2003/eng.testb"}, scheme="iob1"
    ),
)


WNUT = NerDataSpec(
    "wnut17",
    hub=HubNerSource("wnut_17"),
    local=ConllSource(
        {"train": "wnut17/wnut17train.conll", "validation": "wnut17/emerging.dev.conll", "test": "wnut17/emerging.test.annotated"}
    ),
)


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_cache_real")))
        yield


def _check_real(spec: NerDataSpec, shared_data: Path, sentences: list[int], tokens: list[int]) -> NerData:
    splits, source = load_ner_splits(spec, shared_data, seed=0)
    for split in splits.values():
        for tags in split["tags"]:
            _assert_valid_iob2(tags)
    data = encode_ner(splits, spec, source)
    parts = [data.train, data.validation, data.test]
    assert [len(part) for part in parts] == sentences  # type: ignore[arg-type]
    assert [len(part.words) for part in parts] == tokens  # type: ignore[union-attr]
    for part in parts:
        assert part is not None and part.offsets[-1] == len(part.words) == len(part.tags)
        assert part.char_offsets[-1] == len(part.chars) and len(part.char_offsets) == len(part.words) + 1
        assert part.lengths().min() >= 1 and np.diff(part.char_offsets).min() >= 1
    assert source.startswith("local files")
    return data


def test_real_conll2003(shared_data: Path, real_cache: None) -> None:
    data = _check_real(CONLL, shared_data, [14041, 3250, 3453], [203621, 51362, 46435])
    types = ["LOC", "MISC", "ORG", "PER"]
    assert data.tags == ["O"] + [f"{prefix}-{kind}" for kind in types for prefix in "BI"]
    # Entity counts of the standard IOB2 release (train): PER 6600, ORG 6321, LOC 7140, MISC 3438.
    entities = [span[0] for sentence in _sentences(data, data.train) for span in _entities(sentence)]
    assert {kind: entities.count(kind) for kind in types} == {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}


def test_real_conll2003_bioes(shared_data: Path, real_cache: None) -> None:
    spec = NerDataSpec(CONLL.name, hub=CONLL.hub, local=CONLL.local, scheme="bioes")
    data = load_ner(spec, shared_data)
    assert len(data.tags) == 17 and data.tags[:5] == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    assert len(data.train) == 14041 and len(data.train.words) == 203621


def test_real_wnut17(shared_data: Path, real_cache: None) -> None:
    data = _check_real(WNUT, shared_data, [3394, 1009, 1287], [62730, 15733, 23394])
    assert len(data.tags) == 13 and data.tags[0] == "O"
    assert {tag[2:] for tag in data.tags[1:]} == {"person", "location", "group", "creative-work", "corporation", "product"}


def _sentences(data: NerData, part: EncodedSentences) -> list[list[str]]:
    names = data.tag_names(part.tags)
    return [names[start:end] for start, end in zip(part.offsets[:-1], part.offsets[1:])]
