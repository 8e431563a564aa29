"""Tests for trainables.data.text_files: the local text-classification formats, read through `load_splits`."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import datasets
import pytest

from trainables.data import DataError, LocalSource, TextDataSpec, encode, load_splits
from trainables.data.text_files import string_features


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _label_text_spec(files: dict[str, str], **options: object) -> TextDataSpec:
    return TextDataSpec("toy", local=LocalSource("label_text", files), **options)  # type: ignore[arg-type]


def _texts(split: datasets.Dataset) -> list[str]:
    return list(split["text"])


def test_label_text_decodes_cp1252_per_line_and_splits_on_newline_only(tmp_path: Path) -> None:
    # 0x85 is "…" in cp1252; decoded as latin-1 it would be U+0085, a line break for str.splitlines().
    (tmp_path / "train.txt").write_bytes(
        b"0 simply bad \x85 really\n1 caf\xc3\xa9 is fine\r\n\n  \n1 good  \n0 bad\n"
    )
    _write_lines(tmp_path / "dev.txt", ["0 meh", "1 yes"])
    spec = _label_text_spec({"train": "train.txt", "validation": "dev.txt"})

    splits, source = load_splits(spec, tmp_path, seed=0)

    assert len(splits["train"]) == 4
    assert _texts(splits["train"])[:3] == ["simply bad … really", "café is fine", "good"]
    assert list(splits["train"]["label"]) == ["0", "1", "1", "0"]
    assert "test" not in splits
    assert source == f"local files under {tmp_path.resolve()}: train.txt, dev.txt"


def test_label_text_line_without_text_is_an_empty_example(tmp_path: Path) -> None:
    # MPQA has such lines ("0 "); its published size counts them.
    _write_lines(tmp_path / "train.txt", ["0 fine", "", "1", "0 bad"])
    _write_lines(tmp_path / "dev.txt", ["1 fine"])
    spec = _label_text_spec({"train": "train.txt", "validation": "dev.txt"})
    splits, _ = load_splits(spec, tmp_path, seed=0)
    assert _texts(splits["train"]) == ["fine", "", "bad"]
    data = encode(splits, spec)
    assert len(data.train) == 3 and data.train.lengths().min() == 1


def test_csv_tsv_json_read_named_columns(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text('id,sentence,sentiment\n1,"good, really",pos\n2,bad,neg\n3,ok,pos\n')
    (tmp_path / "dev.csv").write_text("id,sentence,sentiment\n4,fine,neg\n")
    # tsv is read without quoting: a lone quote inside a sentence must not swallow the next line.
    (tmp_path / "train.tsv").write_text('sentence\tsentiment\nhe said "hi\t1\nnext line\t0\n')
    (tmp_path / "dev.tsv").write_text("sentence\tsentiment\nyes\t1\n")
    (tmp_path / "train.jsonl").write_text(
        "\n".join(json.dumps({"sentence": text, "sentiment": label}) for text, label in [("a b", 0), ("c", 1)]) + "\n"
    )
    (tmp_path / "dev.json").write_text(json.dumps([{"sentence": "d", "sentiment": 1}]))

    for fmt, train, dev, expected_texts, expected_labels in [
        ("csv", "train.csv", "dev.csv", ["good, really", "bad", "ok"], ["pos", "neg", "pos"]),
        ("tsv", "train.tsv", "dev.tsv", ['he said "hi', "next line"], ["1", "0"]),
        ("json", "train.jsonl", "dev.json", ["a b", "c"], ["0", "1"]),
    ]:
        local = LocalSource(fmt, {"train": train, "validation": dev}, text_column="sentence", label_column="sentiment")
        splits, _ = load_splits(TextDataSpec(fmt, local=local), tmp_path, seed=0)
        assert _texts(splits["train"]) == expected_texts, fmt
        assert list(splits["train"]["label"]) == expected_labels, fmt
        assert len(splits["validation"]) == 1, fmt
        assert splits["train"].features == string_features(), fmt


def test_missing_column_names_file_column_and_existing_columns(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("sentence,label\nhello,1\n")
    local = LocalSource("csv", {"train": "train.csv"}, text_column="text")
    with pytest.raises(DataError) as caught:
        load_splits(TextDataSpec("toy", local=local), tmp_path, seed=0)
    message = str(caught.value)
    assert str(tmp_path / "train.csv") in message
    assert "'text'" in message and "sentence, label" in message


def test_missing_label_value_is_reported(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\nhello,1\nworld,\n")
    with pytest.raises(DataError, match=r"train\.csv: 1 examples have no 'label' value \(first at data row 2\)"):
        load_splits(TextDataSpec("toy", local=LocalSource("csv", {"train": "train.csv"})), tmp_path, seed=0)


def _make_aclimdb(root: Path) -> None:
    for split, label, name, text in [
        ("train", "pos", "0_9.txt", "Great film.<br /><br />Loved it."),
        ("train", "pos", "1_8.txt", "Fine."),
        ("train", "neg", "2_1.txt", "Awful."),
        ("train", "neg", "3_2.txt", "Bad."),
        ("train", "unsup", "4_0.txt", "Ignored."),
        ("test", "pos", "0_10.txt", "Superb."),
        ("test", "neg", "1_3.txt", "Dull."),
    ]:
        folder = root / "aclImdb" / split / label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    (root / "aclImdb" / "README").write_text("readme")


@pytest.mark.parametrize("layout", ["archive", "parent_folder", "aclimdb_folder"])
def test_aclimdb_reads_train_and_test_from_archive_or_folder(tmp_path: Path, layout: str) -> None:
    _make_aclimdb(tmp_path / "extracted")
    if layout == "archive":
        with tarfile.open(tmp_path / "imdb.tar.gz", "w:gz") as archive:
            archive.add(tmp_path / "extracted" / "aclImdb", arcname="aclImdb")
        location = "imdb.tar.gz"
    else:
        location = "extracted" if layout == "parent_folder" else "extracted/aclImdb"
    spec = TextDataSpec("imdb", local=LocalSource("aclimdb", {"archive": location}), carve={"validation": 0.25})

    splits, source = load_splits(spec, tmp_path, seed=0)

    assert {name: len(split) for name, split in splits.items()} == {"train": 3, "validation": 1, "test": 2}
    train_and_dev = _texts(splits["train"]) + _texts(splits["validation"])
    assert sorted(train_and_dev) == sorted(["Great film.<br /><br />Loved it.", "Fine.", "Awful.", "Bad."])
    assert sorted(splits["test"]["label"]) == ["neg", "pos"]
    assert location in source
    encoded = encode(splits, spec)
    assert "br" not in encoded.vocab and encoded.labels == ["neg", "pos"]


def test_aclimdb_without_reviews_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a review")
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "other", arcname="other")
    spec = TextDataSpec("imdb", local=LocalSource("aclimdb", {"archive": "empty.tar.gz"}))
    with pytest.raises(DataError, match=r"empty\.tar\.gz: no reviews found; expected aclImdb/"):
        load_splits(spec, tmp_path, seed=0)


def test_edited_file_is_read_again(tmp_path: Path) -> None:
    # The generator's cache key includes the file's size and mtime, so no stale Arrow cache is used.
    spec = _label_text_spec({"train": "train.txt", "validation": "train.txt"})
    _write_lines(tmp_path / "train.txt", ["0 old"])
    assert _texts(load_splits(spec, tmp_path, seed=0)[0]["train"]) == ["old"]
    _write_lines(tmp_path / "train.txt", ["0 new text"])
    assert _texts(load_splits(spec, tmp_path, seed=0)[0]["train"]) == ["new text"]
