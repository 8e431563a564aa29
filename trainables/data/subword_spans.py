"""Reading comprehension for pretrained encoders: question + context windows, as BERT reads SQuAD.

Each question is tokenized with its context by the model's own tokenizer (question first, then the
context), the context cut into windows of at most `subword_max_length` sub-words that overlap by
`subword_stride`, every sub-word keeping its character offsets in the context. A training window
targets its gold span's first and last sub-words when the whole answer lies in its context part,
else the first token ([CLS]: "not in this window"), as Hugging Face's run_qa does; a question whose
answer cannot be found at its `answer_start` is not trained on (counted in the data line).

An answer is the best span over all of a question's windows: the highest start + end score among
spans of context sub-words with start <= end and at most `max_answer_length` sub-words
(`best_over_windows`), mapped back through the offsets to the exact context substring.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainables.data.common import column
from trainables.data.section import FieldError, check_minimum
from trainables.data.subwords import (
    PretrainedModel,
    cached_arrays,
    fingerprint,
    length_grouped_batches,
    pad_rows,
    pretrained_model,
    ragged,
    sorted_batches,
    tokenizer_fingerprint,
)

MAX_QUESTION_SUBWORDS = 64  # a longer question is cut to this many sub-words (SQuAD's are far shorter)
NOT_IN_WINDOW = 0  # the target position of a training window that does not hold the answer ([CLS])


@dataclass(frozen=True, eq=False)
class SubwordWindows:
    """One split's windows.

    Attributes:
        ids: int32 sub-word ids, windows concatenated; window w is ids[offsets[w]:offsets[w+1]].
        offsets: int64, shape (W+1,).
        types: int8 token type ids beside `ids` (segment A = question, B = context), or None for a
            model without them (RoBERTa).
        question: int32 (W,), each window's question (index into the split's questions).
        context_first, context_last: int32 (W,), the window's first and last context positions.
        start, end: int32 (W,), the gold span's positions in the window; NOT_IN_WINDOW (0) for
            both when the answer is elsewhere; -1 when the question has no aligned answer.
        char_spans: int32 (positions, 2), each position's [start, end) characters in its context
            (dev/test only).
        contexts: the contexts, once each (dev/test only); context_of: int32 (Q,), each question's.
        answers: every gold answer text per question (dev/test only).
    """

    ids: np.ndarray
    offsets: np.ndarray
    types: np.ndarray | None
    question: np.ndarray
    context_first: np.ndarray
    context_last: np.ndarray
    start: np.ndarray
    end: np.ndarray
    char_spans: np.ndarray | None = None
    contexts: list[str] | None = None
    context_of: np.ndarray | None = None
    answers: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.question)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def questions(self) -> int:
        return len(self.context_of) if self.context_of is not None else int(self.question.max()) + 1

    def answer_text(self, window: int, start: int, end: int) -> str:
        """The exact context substring of window positions [start, end]."""
        assert self.char_spans is not None and self.contexts is not None and self.context_of is not None, "text is kept for dev/test only"
        base = int(self.offsets[window])
        context = self.contexts[int(self.context_of[self.question[window]])]
        return context[int(self.char_spans[base + start, 0]):int(self.char_spans[base + end, 1])]


@dataclass(frozen=True)
class SubwordReadingData:
    """A reading-comprehension dataset as one pretrained model reads it."""

    train: SubwordWindows
    validation: SubwordWindows
    test: SubwordWindows | None
    model: PretrainedModel
    max_length: int
    source: str


def check_windows(max_length: int, stride: int) -> None:
    """A spec's `subword_max_length` and `subword_stride`: windows with room for a context."""
    check_minimum("subword_max_length", max_length, 32 + MAX_QUESTION_SUBWORDS)
    if not 0 <= stride < max_length - MAX_QUESTION_SUBWORDS:
        raise FieldError("subword_stride", f"{stride!r} is out of range; it must be >= 0 and less than subword_max_length - "
                         f"{MAX_QUESTION_SUBWORDS} ({max_length - MAX_QUESTION_SUBWORDS}), the room a window keeps for its context")


def window_labels(spans: np.ndarray, context_first: int, context_last: int, answer_start: int, answer_end: int) -> tuple[int, int]:
    """A training window's target positions: the sub-words holding the answer's first and last
    characters ([answer_start, answer_end)), or (NOT_IN_WINDOW, NOT_IN_WINDOW) when the window's
    context does not hold the whole answer. `spans`: the window's character spans."""
    if spans[context_first, 0] > answer_start or spans[context_last, 1] < answer_end:
        return NOT_IN_WINDOW, NOT_IN_WINDOW
    context = spans[context_first:context_last + 1]
    start = context_first + int(np.searchsorted(context[:, 1], answer_start, side="right"))
    end = context_first + int(np.searchsorted(context[:, 0], answer_end, side="left")) - 1
    return start, max(start, end)


def best_over_windows(
    question: np.ndarray, starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, questions: int,
) -> list[tuple[int, int, int] | None]:
    """Per question, the (window, start, end) of its best-scoring window's span: `starts`, `ends`,
    `scores` are each window's best span (`window_best_spans`); ties go to the earlier window."""
    best: list[tuple[int, int, int] | None] = [None] * questions
    best_score = np.full(questions, -np.inf)
    for window in np.argsort(-scores, kind="stable"):
        asked = int(question[window])
        if best[asked] is None and scores[window] > best_score[asked]:
            best[asked] = (int(window), int(starts[window]), int(ends[window]))
            best_score[asked] = scores[window]
    return best


def context_mask(lengths: np.ndarray, context_first: np.ndarray, context_last: np.ndarray, width: int) -> np.ndarray:
    """[B, width]: the positions of each window's context part (where an answer may start or end)."""
    positions = np.arange(width)[None, :]
    return (positions >= context_first[:, None]) & (positions <= context_last[:, None]) & (positions < lengths[:, None])


def _cut_question(tokenizer: Any, question: str) -> str:
    """The question (leading spaces off, as run_qa does), cut to MAX_QUESTION_SUBWORDS sub-words."""
    question = question.lstrip()
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoded["input_ids"]) <= MAX_QUESTION_SUBWORDS:
        return question
    return question[:encoded["offset_mapping"][MAX_QUESTION_SUBWORDS - 1][1]]


def _encode_split(tokenizer: Any, dataset: Any, max_length: int, stride: int, keep_text: bool) -> dict[str, np.ndarray]:
    questions = [_cut_question(tokenizer, q) for q in column(dataset, "question")]
    contexts = column(dataset, "context")
    answers = column(dataset, "answers")
    batch = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
                      return_overflowing_tokens=True, return_offsets_mapping=True)
    windows = len(batch["input_ids"])
    arrays: dict[str, np.ndarray] = {}
    arrays["ids"], arrays["offsets"] = ragged(batch["input_ids"])
    if "token_type_ids" in batch:
        arrays["types"] = ragged(batch["token_type_ids"], dtype=np.int8)[0]
    question_of = np.asarray(batch["overflow_to_sample_mapping"], dtype=np.int32)
    first, last = np.zeros(windows, np.int32), np.zeros(windows, np.int32)
    start, end = np.full(windows, -1, np.int32), np.full(windows, -1, np.int32)
    spans = []
    for window in range(windows):
        sequence = np.array([s if s is not None else -1 for s in batch.sequence_ids(window)])
        in_context = np.flatnonzero(sequence == 1)
        first[window], last[window] = in_context[0], in_context[-1]
        offsets = np.asarray(batch["offset_mapping"][window], dtype=np.int32).reshape(-1, 2)
        spans.append(offsets)
        gold = answers[question_of[window]]
        text, at = (gold["text"][0], gold["answer_start"][0]) if gold["text"] else ("", -1)
        context = contexts[question_of[window]]
        if text.strip() and at >= 0 and context[at:at + len(text)] == text:
            start[window], end[window] = window_labels(offsets, first[window], last[window], at, at + len(text))
    arrays.update(question=question_of, context_first=first, context_last=last, start=start, end=end)
    if keep_text:
        arrays["char_spans"] = np.concatenate(spans)
        unique = {text: index for index, text in enumerate(dict.fromkeys(contexts))}
        arrays["context_of"] = np.array([unique[text] for text in contexts], dtype=np.int32)
    return arrays


def encode_windows(splits: Any, model_name: str, data_root: str | os.PathLike | None, max_length: int, stride: int) -> tuple[SubwordReadingData, str]:
    """Every split's questions and contexts in `model_name`'s sub-word windows; the data and a note."""
    model, tokenizer = pretrained_model(model_name, data_root)
    texts = {split: [column(d, "question"), column(d, "context"), column(d, "answers")] for split, d in splits.items()}
    key = fingerprint(tokenizer_fingerprint(tokenizer), max_length, stride, MAX_QUESTION_SUBWORDS, texts)

    def build() -> dict[str, np.ndarray]:
        arrays = {}
        for split, dataset in splits.items():
            encoded = _encode_split(tokenizer, dataset, max_length, stride, keep_text=split != "train")
            arrays.update({f"{split}.{name}": value for name, value in encoded.items()})
        return arrays

    arrays, from_cache = cached_arrays("windows", key, build)
    encoded: dict[str, SubwordWindows] = {}
    for split, (_, contexts, answers) in texts.items():
        fields = {name.split(".", 1)[1]: value for name, value in arrays.items() if name.startswith(f"{split}.")}
        if split != "train":
            fields.update(contexts=list(dict.fromkeys(contexts)), answers=[list(gold["text"]) for gold in answers])
        encoded[split] = SubwordWindows(**{"types": None, **fields})
    data = SubwordReadingData(encoded["train"], encoded["validation"], encoded.get("test"), model, max_length, f"{model_name} sub-words")
    train = encoded["train"]
    multi = int(np.sum(np.bincount(train.question) > 1))
    unaligned = len(set(train.question[train.start < 0].tolist()))
    note = (f"{model_name}: {'cached sub-words' if from_cache else 'tokenized'} ({len(train)} train windows of at most {max_length} "
            f"sub-words, stride {stride}; {multi} questions in several windows" + (f"; {unaligned} unaligned answers not trained on" if unaligned else "") + ")")
    return data, note


@dataclass
class WindowArrays:
    """One batch as arrays: windows [B, S] padded, their token types, the candidate positions of
    the loss (the first token and the context part), the context part, gold positions."""

    index: np.ndarray
    ids: np.ndarray
    mask: np.ndarray
    types: np.ndarray | None
    candidates: np.ndarray
    context: np.ndarray
    start: np.ndarray
    end: np.ndarray


def window_batches(split: SubwordWindows, pad: int, batch_size: int, windows: np.ndarray, rng: np.random.Generator | None = None) -> Iterator[WindowArrays]:
    """Batches of `windows` (indices into `split`), padded to their own longest, grouped by
    length and shuffled with `rng`, else (evaluation) in order of length."""
    lengths = split.lengths()[windows]
    order = length_grouped_batches(lengths, batch_size, rng) if rng is not None else sorted_batches(lengths, batch_size)
    for chosen in order:
        index = windows[chosen]
        ids, mask = pad_rows(split.ids, split.offsets, index, pad)
        types = pad_rows(split.types, split.offsets, index, 0)[0] if split.types is not None else None
        context = context_mask(split.lengths()[index], split.context_first[index], split.context_last[index], ids.shape[1])
        candidates = context.copy()
        candidates[:, NOT_IN_WINDOW] = True
        yield WindowArrays(index, ids, mask, types, candidates, context, split.start[index].astype(np.int64), split.end[index].astype(np.int64))
