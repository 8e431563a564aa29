"""Tests for trainables.data.section: the study-file section reader, and each data spec reading its
own section with the same limits as its constructor."""

from __future__ import annotations

import pytest

from trainables.data import FieldError, NerDataSpec, ReadingComprehensionDataSpec, Section, TextDataSpec

TEXT = {"name": "toy", "local": {"format": "label_text", "files": {"train": "train.txt"}}}
NER = {"name": "toy", "local": {"format": "conll", "files": {"train": "train.txt"}}}
SQUAD = {"name": "toy", "local": {"format": "squad", "files": {"train": "train.json"}}}


def test_reader_types_and_dotted_fields() -> None:
    section = Section({"n": 3, "flag": "yes", "inner": {"x": 1.5}}, "data.")
    assert section.integer("n", minimum=1) == 3 and section.integer("absent", 7) == 7
    with pytest.raises(FieldError) as caught:
        section.integer("n", minimum=4)
    assert (caught.value.field, caught.value.message) == ("data.n", "3 is too small; it must be an integer >= 4")
    with pytest.raises(FieldError, match="'yes' is not true or false"):
        section.boolean("flag", False)
    inner = section.section("inner")
    assert inner is not None and inner.number("x", minimum=1.0) == 1.5
    with pytest.raises(FieldError) as caught:
        inner.check_keys(("y",))
    assert caught.value.field == "data.inner.x" and "accepted here: y" in caught.value.message
    assert str(caught.value) == "field `data.inner.x`: unknown field; accepted here: y"


@pytest.mark.parametrize(
    ("spec", "section", "field", "message"),
    [
        (TextDataSpec, {**TEXT, "max_vocab": 2}, "data.max_vocab", "2 is too small; it must be an integer >= 3"),
        (TextDataSpec, {**TEXT, "carve": {"test": 0.5}}, "data.carve.test", "0.5 is too large; a fraction of train in (0, 0.5) is accepted"),
        (TextDataSpec, {**TEXT, "local": {"format": "aclimdb", "files": {"a": "x", "b": "y"}}}, "data.local.files", "aclimdb data takes a single entry"),
        (TextDataSpec, {**TEXT, "hub": {"path": "x/y", "splits": {"dev": "dev"}}}, "data.hub.splits.dev", "unknown split; accepted: train, validation, test"),
        (NerDataSpec, {**NER, "max_vocab": 2}, "data.max_vocab", "2 is too small; it must be an integer >= 3"),
        (NerDataSpec, {**NER, "local": {**NER["local"], "token_column": 1, "tag_column": 1}}, "data.local.tag_column", "the same column (1)"),
        (NerDataSpec, {**NER, "scheme": "iob1"}, "data.scheme", "'iob1' is not accepted; accepted: iob2, bioes"),
        (ReadingComprehensionDataSpec, {**SQUAD, "max_vocab": 2}, "data.max_vocab", "2 is too small; it must be an integer >= 3"),
        (ReadingComprehensionDataSpec, {**SQUAD, "max_examples": {"train": 0}}, "data.max_examples.train", "0 is too small"),
    ],
)
def test_a_spec_refuses_in_its_section_what_its_constructor_refuses(spec: type, section: dict, field: str, message: str) -> None:
    with pytest.raises(FieldError) as from_file:
        spec.from_section(Section(section, "data."))  # type: ignore[attr-defined]
    assert from_file.value.field == field and message in from_file.value.message


@pytest.mark.parametrize(("spec", "section"), [(TextDataSpec, TEXT), (NerDataSpec, NER), (ReadingComprehensionDataSpec, SQUAD)])
def test_a_section_with_defaults_builds_the_spec_with_the_class_defaults(spec: type, section: dict) -> None:
    from_file = spec.from_section(Section(section, "data."))  # type: ignore[attr-defined]
    direct = spec("toy", local=from_file.local)
    assert from_file == direct
