"""SQuAD EM/F1 against cases worked out by hand with the official evaluate-v1.1.py rules."""

from __future__ import annotations

import pytest

from trainables.squad_metrics import best_over_gold, exact_match, f1, normalize_answer, squad_scores


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  an  apple,\ta pear ", "apple pear"),
        ("theatre of the absurd", "theatre of absurd"),  # "the" inside a word stays
        ("U.S.-led", "usled"),  # punctuation is deleted, not replaced by a space
        ("A", ""),
    ],
)
def test_official_normalization(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize(
    ("prediction", "gold", "em", "f1_score"),
    [
        ("Denver Broncos", "Denver Broncos", 1.0, 1.0),
        ("the Denver Broncos.", "Denver Broncos", 1.0, 1.0),
        ("Broncos", "Denver Broncos", 0.0, 2 / 3),  # P 1/1, R 1/2
        ("Denver Broncos won", "Broncos", 0.0, 0.5),  # P 1/3, R 1/1
        ("x y y", "y y z", 0.0, 2 / 3),  # repeated tokens count with multiplicity: common 2, P = R = 2/3
        ("Paris", "London", 0.0, 0.0),
        ("the", "a", 1.0, 0.0),  # both normalize to "": equal, but no common token for F1
    ],
)
def test_exact_match_and_f1_by_hand(prediction: str, gold: str, em: float, f1_score: float) -> None:
    assert exact_match(prediction, gold) == em
    assert f1(prediction, gold) == pytest.approx(f1_score)


def test_scores_take_the_best_gold_answer_and_average_over_questions() -> None:
    golds = [["Denver Broncos", "Broncos", "the Broncos"], ["1856"], ["Nikola Tesla", "Tesla"]]
    predictions = ["Broncos", "in 1856", "Thomas Edison"]
    assert best_over_gold(f1, "Broncos", golds[0]) == 1.0
    assert best_over_gold(exact_match, "anything", []) == 0.0
    scores = squad_scores(predictions, golds)
    assert scores["exact_match"] == pytest.approx(1 / 3)
    # F1: 1 (exact), 2/3 (P 1/2, R 1), 0.
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
