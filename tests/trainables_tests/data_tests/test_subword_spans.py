"""Reading comprehension on sub-word windows (trainables.data.subword_spans and the adapter's
decoding): targets per window, the best span across windows, the exact context substring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.data.subword_spans import NOT_IN_WINDOW, best_over_windows, window_labels

# A window: [CLS] q q [SEP] then the context "The film is very good." from position 4, then [SEP].
SPANS = np.array([[0, 0], [0, 4], [5, 8], [0, 0], [0, 3], [4, 8], [9, 11], [12, 16], [17, 21], [21, 22], [0, 0]], dtype=np.int32)
CONTEXT_FIRST, CONTEXT_LAST = 4, 9


@pytest.mark.parametrize(("answer", "expected"), [
    ((4, 8), (5, 5)),  # "film"
    ((9, 21), (6, 8)),  # "is very good"
    ((17, 22), (8, 9)),  # "good."
    ((5, 8), (5, 5)),  # "ilm": starts inside a token, which is kept whole
    ((0, 30), (NOT_IN_WINDOW, NOT_IN_WINDOW)),  # ends past the window's context
])
def test_a_training_window_targets_the_sub_words_holding_its_answer(answer: tuple[int, int], expected: tuple[int, int]) -> None:
    assert window_labels(SPANS, CONTEXT_FIRST, CONTEXT_LAST, *answer) == expected


def test_an_answer_outside_the_windows_context_targets_the_first_token() -> None:
    later = SPANS.copy()
    later[CONTEXT_FIRST:CONTEXT_LAST + 1] += 40  # the same window, further into a long context
    assert window_labels(later, CONTEXT_FIRST, CONTEXT_LAST, 4, 8) == (NOT_IN_WINDOW, NOT_IN_WINDOW)


def scores(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_the_best_span_is_chosen_across_windows_within_the_length_limit() -> None:
    """Hand-worked: three windows, question 0 in windows 0 and 1, question 1 in window 2.

    window 0 (context 2..5): start 2 (3.0) + end 3 (2.0) = 5.0
    window 1 (context 1..5): position 0 scores 9 + 9 but is not context. Spans of at most
        2 sub-words: start 3 (3.5) + end 4 (2.0) = 5.5, which beats window 0's 5.0;
        3 sub-words: start 3 + end 5 (4.0) = 7.5;  5 sub-words: start 1 (4.0) + end 5 = 8.0
    window 2 (context 2..4): only start 2 + end 2 = 1.0 + 1.0 scores
    """
    from trainables.reading_comprehension import WindowScores, best_answers

    start = scores([[0, 0, 3.0, 0, 0, 0], [9.0, 4.0, 0, 3.5, 0, 0], [0, 0, 1.0, 0, 0, 0]])
    end = scores([[0, 0, 0, 2.0, 0, 0], [9.0, 0, 0, 0, 2.0, 4.0], [0, 0, 1.0, 0, 0, 0]])
    context = torch.zeros(3, 6, dtype=torch.bool)
    context[0, 2:6], context[1, 1:6], context[2, 2:5] = True, True, True
    question = np.array([0, 0, 1])
    assert best_answers(WindowScores(start, end), context, question, 2, max_answer_length=2) == [(1, 3, 4), (2, 2, 2)]
    assert best_answers(WindowScores(start, end), context, question, 2, max_answer_length=3)[0] == (1, 3, 5)
    assert best_answers(WindowScores(start, end), context, question, 2, max_answer_length=5)[0] == (1, 1, 5)
    only_window_0 = best_answers(WindowScores(start[:1], end[:1]), context[:1], question[:1], 1, max_answer_length=2)
    assert only_window_0 == [(0, 2, 3)]


def test_a_question_keeps_its_first_best_window_on_a_tie_and_none_without_context() -> None:
    found = best_over_windows(np.array([0, 0, 1]), np.array([1, 2, 0]), np.array([1, 2, 0]), np.array([2.0, 2.0, -np.inf]), 2)
    assert found == [(0, 1, 1), None]


def squad_file(path: Path, context: str, qas: list[tuple[str, str]]) -> Path:
    questions = [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]} for i, (q, a) in enumerate(qas)]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": questions}]}]}))
    return path


def test_windows_with_a_stride_cover_a_long_context_and_decoding_reads_back_the_exact_substring(tmp_path: Path, tiny_bert: Path) -> None:
    from search.config import parse_data_section
    from trainables.data.subwords import with_pretrained
    from trainables.reading_comprehension import TASK, WindowScores, best_answers

    context = "John lives in Paris. " * 30 + "Mary met Wei in Cape Town, yesterday."
    path = squad_file(tmp_path / "toy.json", context, [("where did mary meet wei ?", "Cape Town"), ("who lives in paris ?", "John")])
    section = {"name": "toy", "local": {"files": {"train": str(path), "validation": str(path), "test": str(path)}},
               "subword_max_length": 96, "subword_stride": 16}
    data = TASK.load_data(with_pretrained(parse_data_section("reading_comprehension", section, "doc"), [str(tiny_bert)]), None, 0)
    windows = data.subwords[str(tiny_bert)].validation
    assert len(windows) > 2 and np.bincount(windows.question).min() >= 2  # each question in several windows
    holding = np.flatnonzero((windows.question == 0) & (windows.start > 0))
    assert len(holding) >= 1
    window = int(holding[0])
    assert windows.answer_text(window, int(windows.start[window]), int(windows.end[window])) == "Cape Town"
    # Scores that peak at the gold span of that window, and higher but outside the context elsewhere.
    width = int(windows.lengths().max())
    start, end = torch.zeros(len(windows), width), torch.zeros(len(windows), width)
    start[:, 0] = end[:, 0] = 50.0  # [CLS]: never an answer
    start[window, windows.start[window]], end[window, windows.end[window]] = 5.0, 5.0
    positions = torch.arange(width)[None, :]
    context_part = (positions >= torch.from_numpy(windows.context_first)[:, None].long()) & (positions <= torch.from_numpy(windows.context_last)[:, None].long())
    found = best_answers(WindowScores(start, end), context_part, windows.question, 2, max_answer_length=30)
    assert found[0][0] == window and windows.answer_text(*found[0]) == "Cape Town"
    assert context[context.index("Cape"):].startswith(windows.answer_text(*found[0]))
