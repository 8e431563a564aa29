"""Tests for trainables.data.conll: reading CoNLL column files and their source settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainables.data import ConllSource, DataError, FieldError, NerDataSpec, load_ner_splits, read_conll


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_conll_skips_docstart_and_splits_on_blank_and_tab_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "train.txt",
        "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\t\n  \nPeter NNP I-NP I-PER\n"
        "-DOCSTART- -X- O O\nBlackburn NNP I-NP I-PER\n\n\n\nBRUSSELS\tNNP I-NP\tI-LOC",  # no final newline
    )
    assert list(read_conll(path)) == [
        {"tokens": ["EU", "rejects"], "tags": ["I-ORG", "O"]},
        {"tokens": ["Peter"], "tags": ["I-PER"]},
        {"tokens": ["Blackburn"], "tags": ["I-PER"]},
        {"tokens": ["BRUSSELS"], "tags": ["I-LOC"]},
    ]
    assert list(read_conll(path, token_column=1, tag_column=2))[0] == {"tokens": ["NNP", "VBZ"], "tags": ["I-NP", "I-VP"]}


def test_read_conll_refuses_malformed_lines_with_their_line_number(tmp_path: Path) -> None:
    mixed = _write(tmp_path / "mixed.txt", "EU NNP I-ORG\nrejects VBZ O\n\nGerman I-MISC\n")
    with pytest.raises(DataError, match=r"mixed\.txt, line 4: 2 column\(s\), but the file's first line has 3"):
        list(read_conll(mixed))

    short = _write(tmp_path / "short.txt", "\n\nlonely\nword\n")
    with pytest.raises(DataError, match=r"short\.txt, line 3: 1 column\(s\)"):
        list(read_conll(short))
    with pytest.raises(DataError, match=r"line 1: 2 column\(s\), fewer than needed"):
        list(read_conll(_write(tmp_path / "two.txt", "a O\n"), tag_column=3))

    with pytest.raises(DataError, match="cannot be read"):
        list(read_conll(tmp_path / "absent.txt"))


def test_bad_tag_in_a_file_is_refused_with_its_line(tmp_path: Path) -> None:
    _write(tmp_path / "train.txt", "a O\nb B-PER\n\nc O\nd X-PER\n")
    spec = NerDataSpec("toy", local=ConllSource({"train": "train.txt"}))
    with pytest.raises(DataError, match=r"train\.txt, line 5: tag 'X-PER'"):
        load_ner_splits(spec, tmp_path, seed=0)


@pytest.mark.parametrize(
    ("build", "field", "fragment"),
    [
        (lambda: ConllSource({"validation": "dev.txt"}), "files", "no `train` entry"),
        (lambda: ConllSource({"train": "train.txt"}, scheme="bilou"), "scheme", "'bilou' is not accepted; accepted: iob1, iob2, bioes"),
        (lambda: ConllSource({"train": "train.txt"}, token_column="a"), "token_column", "is not a column index"),  # type: ignore[arg-type]
        (lambda: ConllSource({"train": "train.txt"}, token_column=1, tag_column=1), "tag_column", "the same column (1)"),
    ],
)
def test_source_validation_names_the_field(build: object, field: str, fragment: str) -> None:
    with pytest.raises(FieldError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field and fragment in caught.value.message
