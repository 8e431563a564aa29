"""How a span-extraction model turns its start and end scores into one answer span.

- best_span: the span (start <= end) with the highest start + end log-probability among spans of at
  most `max_answer_length` tokens. It only acts at prediction time, so searching it is cheap; SQuAD
  answers are short (most are under 10 tokens), and the usual bounds are 15 to 30. With a
  pretrained encoder the tokens are its sub-words, and the span is the best over all the windows
  of the question's context.
"""

from __future__ import annotations

from spaces._base import Component, Int, at_least, registry

DECODERS = registry(
    "decoder",
    "choice",
    [
        Component(
            "best_span",
            {"max_answer_length": Int(10, 30, step=5, limits=at_least(1), doc="a maximum answer length in tokens")},
            None,
            "best start <= end within max_answer_length tokens, batched",
        ),
    ],
)
