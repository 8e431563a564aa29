"""SQuAD v1.1 exact match and F1, as the official evaluation script (evaluate-v1.1.py) computes them.

Both compare normalized answers: lower case, punctuation removed, the articles a/an/the removed,
whitespace collapsed. A prediction scores the maximum over all gold answers of its question.
Scores here are fractions in [0, 1] (the official script prints percentages).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop articles, collapse whitespace (official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token-level F1 of the normalized answers (bag of words, counted with multiplicity)."""
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = sum((Counter(predicted_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(predicted_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def best_over_gold(metric: Callable[[str, str], float], prediction: str, golds: Sequence[str]) -> float:
    """The metric against every gold answer, the best of them (0 when there are none)."""
    return max((metric(prediction, gold) for gold in golds), default=0.0)


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and F1 over questions (fractions)."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    count = max(len(predictions), 1)
    return {
        "exact_match": sum(best_over_gold(exact_match, p, g) for p, g in zip(predictions, golds)) / count,
        "f1": sum(best_over_gold(f1, p, g) for p, g in zip(predictions, golds)) / count,
    }
