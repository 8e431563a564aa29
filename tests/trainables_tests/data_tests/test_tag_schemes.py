"""Tests for trainables.data.tag_schemes: conversions between IOB1, IOB2 and BIOES, parsing, ordering."""

from __future__ import annotations

import pytest

from trainables.data.tag_schemes import SCHEMES, TagError, convert_scheme, parse_tag, tag_order_key


def test_iob1_to_iob2_on_the_conll_cases() -> None:
    assert convert_scheme(["I-ORG", "I-ORG", "O"], "iob1", "iob2") == ["B-ORG", "I-ORG", "O"]
    assert convert_scheme(["I-PER", "B-PER", "I-PER"], "iob1", "iob2") == ["B-PER", "B-PER", "I-PER"]
    assert convert_scheme(["I-PER", "I-LOC", "O", "I-MISC"], "iob1", "iob2") == ["B-PER", "B-LOC", "O", "B-MISC"]
    assert convert_scheme([], "iob1", "iob2") == []
    # And back: B- only where an entity directly follows one of the same type.
    assert convert_scheme(["B-PER", "B-PER", "I-PER", "B-LOC"], "iob2", "iob1") == ["I-PER", "B-PER", "I-PER", "I-LOC"]


def test_iob2_bioes_round_trip_with_hyphenated_types() -> None:
    iob2 = ["B-PER", "O", "B-creative-work", "I-creative-work", "I-creative-work", "B-LOC", "B-LOC", "I-LOC", "O", "B-X"]
    bioes = ["S-PER", "O", "B-creative-work", "I-creative-work", "E-creative-work", "S-LOC", "B-LOC", "E-LOC", "O", "S-X"]
    assert convert_scheme(iob2, "iob2", "bioes") == bioes
    assert convert_scheme(bioes, "bioes", "iob2") == iob2
    assert convert_scheme(iob2, "iob2", "iob2") == iob2 and convert_scheme(bioes, "bioes", "bioes") == bioes
    assert convert_scheme(["I-ORG", "I-ORG", "B-ORG"], "iob1", "bioes") == ["B-ORG", "E-ORG", "S-ORG"]
    assert sorted(SCHEMES) == ["bioes", "iob1", "iob2"]


def test_bad_tags_and_schemes_are_refused() -> None:
    for bad, scheme in [("X-PER", "iob2"), ("B-", "iob2"), ("PER", "iob1"), ("E-PER", "iob2"), ("o", "bioes")]:
        with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(")):
            convert_scheme(["O", bad], scheme, "iob2")
    with pytest.raises(ValueError, match="scheme"):
        convert_scheme(["O"], "bilou", "iob2")
    with pytest.raises(ValueError, match="scheme"):
        convert_scheme(["O"], "iob2", "io")


def test_parse_tag_splits_on_the_first_dash_and_names_the_position() -> None:
    assert parse_tag("O", "iob2") == ("O", None)
    assert parse_tag("S-creative-work", "bioes") == ("S", "creative-work")
    with pytest.raises(TagError, match=r"tag 'S-PER' at position 3 is not a valid iob2 tag \(expected O or B-TYPE/I-TYPE\)") as caught:
        parse_tag("S-PER", "iob2", position=3)
    assert caught.value.position == 3


def test_tag_order_is_o_then_type_then_entity_order_and_unknown_last() -> None:
    tags = ["S-PER", "I-LOC", "junk", "B-PER", "O", "E-PER", "B-LOC"]
    assert sorted(tags, key=tag_order_key) == ["O", "B-LOC", "I-LOC", "B-PER", "E-PER", "S-PER", "junk"]
