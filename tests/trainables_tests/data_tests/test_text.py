"""Tests for trainables.data.text: finding, carving and encoding text-classification data."""

from __future__ import annotations

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
    HubSource,
    LocalSource,
    TextDataSpec,
    common,
    encode,
    load_splits,
    load_text_classification,
    tokenize,
)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _label_text_spec(files: dict[str, str], **options: object) -> TextDataSpec:
    return TextDataSpec("toy", local=LocalSource("label_text", files), **options)  # type: ignore[arg-type]


def _texts(split: datasets.Dataset) -> list[str]:
    return list(split["text"])


# --------------------------------------------------------------------------------------------
# Tokenizer


def test_tokenize_lowercases_drops_breaks_and_keeps_apostrophes() -> None:
    assert tokenize("It's GREAT.<br /><br />Wo n't stop!") == ["it's", "great", ".", "wo", "n't", "stop", "!"]
    assert tokenize("Hello <BR/>World", lowercase=False) == ["Hello", "World"]
    assert tokenize("") == []


# --------------------------------------------------------------------------------------------
# Loading


def test_missing_files_without_hub_explain_where_and_how(tmp_path: Path) -> None:
    spec = _label_text_spec({"train": "sentence/toy/train.txt", "validation": "sentence/toy/dev.txt"})

    with pytest.raises(DataError) as with_root:
        load_splits(spec, tmp_path, seed=0)
    message = str(with_root.value)
    assert str(tmp_path.resolve() / "sentence/toy/train.txt") in message
    assert str(tmp_path.resolve() / "sentence/toy/dev.txt") in message
    assert "--data-root" in message and "SEARCH_DATA_ROOT" in message
    assert "no hub dataset" in message

    with pytest.raises(DataError) as without_root:
        load_splits(spec, None, seed=0)
    assert "not set" in str(without_root.value) and "SEARCH_DATA_ROOT" in str(without_root.value)


def test_data_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_lines(tmp_path / "train.txt", ["0 a", "1 b"] * 5)
    _write_lines(tmp_path / "dev.txt", ["0 a", "1 b"])
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    data = load_text_classification(_label_text_spec({"train": "train.txt", "validation": "dev.txt"}))
    assert len(data.train) == 10 and len(data.validation) == 2 and data.test is None


def test_local_files_are_preferred_to_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_lines(tmp_path / "train.txt", ["0 a", "1 b"] * 5)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: pytest.fail("hub must not be used"))
    spec = TextDataSpec("toy", hub=HubSource("x/y"), local=LocalSource("label_text", {"train": "train.txt"}))
    splits, source = load_splits(spec, tmp_path, seed=0)
    assert source.startswith("local files") and len(splits["validation"]) == 1


# --------------------------------------------------------------------------------------------
# Hub


def test_unreachable_hub_fails_fast_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: pytest.fail("no load after a failed probe"))
    spec = TextDataSpec("sst2", hub=HubSource("SetFit/sst2"), local=LocalSource("label_text", {"train": "sst2/train"}))

    started = time.monotonic()
    with pytest.raises(DataError) as caught:
        load_splits(spec, tmp_path, seed=0)
    assert time.monotonic() - started < 5
    hub_lines = [line for line in str(caught.value).splitlines() if "hub:" in line]
    assert len(hub_lines) == 1 and "SetFit/sst2" in hub_lines[0] and "unreachable" in hub_lines[0]
    assert str(tmp_path.resolve() / "sst2/train") in str(caught.value)


def test_hub_columns_class_labels_and_unlabeled_test(monkeypatch: pytest.MonkeyPatch) -> None:
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "idx": datasets.Value("int32"),
            "y": datasets.ClassLabel(names=["neg", "pos"]),
        }
    )

    def rows(count: int, labels: list[int]) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"sentence": [f"text {i}" for i in range(count)], "idx": list(range(count)), "y": labels}, features=features
        )

    fake = datasets.DatasetDict({"train": rows(20, [0, 1] * 10), "test": rows(4, [-1] * 4)})
    monkeypatch.setattr(common, "hub_unreachable_reason", lambda: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None: fake)
    spec = TextDataSpec("glue", hub=HubSource("nyu/glue", "sst2", text_column="sentence", label_column="y"))

    splits, source = load_splits(spec, None, seed=3)

    assert sorted(splits) == ["train", "validation"]  # unlabeled test dropped, validation carved
    assert (len(splits["train"]), len(splits["validation"])) == (18, 2)
    assert sorted(splits["validation"]["label"]) == ["neg", "pos"]  # stratified
    assert splits["train"].column_names == ["text", "label"]
    assert source.startswith("hub dataset nyu/glue (config sst2)") and "validation (2 examples" in source


# --------------------------------------------------------------------------------------------
# Carving


def _carve_fixture(tmp_path: Path) -> TextDataSpec:
    lines = [f"{i % 2} example number {i}" for i in range(100)]
    _write_lines(tmp_path / "all.txt", lines)
    return _label_text_spec({"train": "all.txt"}, carve={"validation": 0.1, "test": 0.2})


def test_carve_sizes_stratified_and_deterministic(tmp_path: Path) -> None:
    spec = _carve_fixture(tmp_path)
    first, source = load_splits(spec, tmp_path, seed=7)
    again, _ = load_splits(spec, tmp_path, seed=7)
    other, _ = load_splits(spec, tmp_path, seed=8)

    assert {name: len(split) for name, split in first.items()} == {"train": 70, "validation": 10, "test": 20}
    for name in ("train", "validation", "test"):
        assert _texts(first[name]) == _texts(again[name])
    assert _texts(first["test"]) != _texts(other["test"])
    assert sorted(first["test"]["label"]).count("0") == 10
    all_texts = _texts(first["train"]) + _texts(first["validation"]) + _texts(first["test"])
    assert len(set(all_texts)) == 100
    assert "test (20 examples, 20%) carved from train with seed 7" in source


def test_missing_validation_gets_ten_percent_by_default(tmp_path: Path) -> None:
    _write_lines(tmp_path / "train.txt", [f"{i % 3} t{i}" for i in range(50)])
    _write_lines(tmp_path / "test.txt", ["0 x", "1 y", "2 z"])
    splits, _ = load_splits(_label_text_spec({"train": "train.txt", "test": "test.txt"}), tmp_path, seed=0)
    assert {name: len(split) for name, split in splits.items()} == {"train": 45, "validation": 5, "test": 3}


@pytest.mark.parametrize(
    ("build", "field", "fragment"),
    [
        (lambda: _label_text_spec({"train": "x"}, carve={"train": 0.1}), "carve.train", "accepted here: validation, test"),
        (lambda: _label_text_spec({"train": "x"}, carve={"test": 0.5}), "carve.test", "a fraction of train in (0, 0.5)"),
        (lambda: _label_text_spec({"train": "x"}, max_vocab=2), "max_vocab", "2 is too small; it must be an integer >= 3"),
        (lambda: _label_text_spec({"train": "x"}, max_length=0), "max_length", "it must be an integer >= 1"),
        (lambda: LocalSource("xml", {"train": "x"}), "format", "'xml' is not accepted; accepted: label_text, csv"),
        (lambda: LocalSource("csv", {"dev": "x"}), "files.dev", "unknown split; accepted: train, validation, test"),
        (lambda: LocalSource("aclimdb", {"a": "x", "b": "y"}), "files", "aclimdb data takes a single entry"),
        (lambda: HubSource("x/y", splits={"validation": "validation"}), "splits", "no `train` entry"),
        (lambda: TextDataSpec("nothing"), "hub", "a dataset needs `hub`"),
    ],
)
def test_spec_validation_names_the_field(build: object, field: str, fragment: str) -> None:
    with pytest.raises(FieldError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field and fragment in caught.value.message


# --------------------------------------------------------------------------------------------
# Encoding


def _splits(train: list[tuple[str, str]], validation: list[tuple[str, str]]) -> datasets.DatasetDict:
    def dataset(rows: list[tuple[str, str]]) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [label for _, label in rows]})

    return datasets.DatasetDict({"train": dataset(train), "validation": dataset(validation)})


def test_vocabulary_comes_from_train_only() -> None:
    splits = _splits(
        [("good movie", "1"), ("bad movie", "0"), ("", "1"), ("movie movie movie good", "1")],
        [("great movie", "0")],
    )
    data = encode(splits, TextDataSpec("toy", local=LocalSource("label_text", {"train": "x"}), max_length=3))

    # Counts come from the truncated train tokens ("good" of the 4th text is cut off): movie 5,
    # bad 1, good 1; ties in token order.
    assert data.vocab == ["<pad>", "<unk>", "movie", "bad", "good"]
    assert data.labels == ["0", "1"]
    np.testing.assert_array_equal(data.validation.tokens, [1, 2])  # "great" is dev-only -> <unk>
    np.testing.assert_array_equal(data.train.offsets, [0, 2, 4, 5, 8])
    np.testing.assert_array_equal(data.train.lengths(), [2, 2, 1, 3])  # empty -> <unk>; truncated to 3
    np.testing.assert_array_equal(data.train.tokens[4], 1)
    np.testing.assert_array_equal(data.train.labels, [1, 0, 1, 1])
    assert data.train.tokens.dtype == np.int32 and data.train.offsets.dtype == np.int64
    assert data.train.labels.dtype == np.int64 and data.train.lengths().dtype == np.int64
    assert len(data.train) == 4 and data.test is None


def test_vocabulary_min_freq_max_vocab_and_numeric_label_order() -> None:
    splits = _splits([("a a a b b c", "10"), ("a b d", "2"), ("a", "2")], [("c", "10")])
    local = LocalSource("label_text", {"train": "x"})
    data = encode(splits, TextDataSpec("toy", local=local, min_freq=2))
    assert data.vocab == ["<pad>", "<unk>", "a", "b"]
    assert data.labels == ["2", "10"]
    assert encode(splits, TextDataSpec("toy", local=local, max_vocab=3)).vocab == ["<pad>", "<unk>", "a"]


def test_unknown_validation_label_is_an_error() -> None:
    splits = _splits([("a", "neg"), ("b", "pos")], [("c", "neutral")])
    with pytest.raises(DataError, match=r"validation split has labels not seen in train: 'neutral'"):
        encode(splits, TextDataSpec("toy", local=LocalSource("label_text", {"train": "x"})))


# --------------------------------------------------------------------------------------------
# Real benchmark data


def test_real_sst2_sizes(shared_data: Path) -> None:
    local = LocalSource(
        "label_text",
        {
            "train": "sentence/sst2/stsa.binary.train",
            "validation": "sentence/sst2/stsa.binary.dev",
            "test": "sentence/sst2/stsa.binary.test",
        },
    )
    data = load_text_classification(TextDataSpec("sst2", local=local), shared_data)
    assert (len(data.train), len(data.validation), len(data.test)) == (6920, 872, 1821)  # type: ignore[arg-type]
    assert np.bincount(data.train.labels).tolist() == [3310, 3610]
    assert data.labels == ["0", "1"]


def test_real_mr_total_labels_and_deterministic_carve(shared_data: Path) -> None:
    spec = TextDataSpec(
        "mr",
        local=LocalSource("label_text", {"train": "sentence/mr/rt-polarity.all"}),
        carve={"validation": 0.1, "test": 0.1},
    )
    first = load_text_classification(spec, shared_data, seed=0)
    again = load_text_classification(spec, shared_data, seed=0)
    parts = (first.train, first.validation, first.test)
    assert sum(len(part) for part in parts) == 10662  # type: ignore[arg-type]
    label_counts = sum(np.bincount(part.labels, minlength=2) for part in parts)  # type: ignore[union-attr]
    assert label_counts.tolist() == [5331, 5331]
    assert (len(first.validation), len(first.test)) == (1066, 1066)  # type: ignore[arg-type]
    for mine, theirs in zip(parts, (again.train, again.validation, again.test)):
        np.testing.assert_array_equal(mine.tokens, theirs.tokens)  # type: ignore[union-attr]
        np.testing.assert_array_equal(mine.labels, theirs.labels)  # type: ignore[union-attr]
    assert "…" in first.vocab  # cp1252 0x85 decoded as an ellipsis


def test_real_imdb_from_archive(shared_data: Path) -> None:
    # About 7 s on one core with a cold cache (3 s streaming the archive, 4 s encoding).
    spec = TextDataSpec("imdb", local=LocalSource("aclimdb", {"archive": "imdb/aclImdb_train_test.tar.gz"}))
    splits, _ = load_splits(spec, shared_data, seed=0)
    assert len(splits["train"]) + len(splits["validation"]) == 25000
    data = encode(splits, spec)
    train_labels = np.concatenate([data.train.labels, data.validation.labels])
    assert np.bincount(train_labels).tolist() == [12500, 12500]
    assert data.test is not None and len(data.test) == 25000
    assert np.bincount(data.test.labels).tolist() == [12500, 12500]
    assert data.labels == ["neg", "pos"] and int(data.train.lengths().max()) == spec.max_length
