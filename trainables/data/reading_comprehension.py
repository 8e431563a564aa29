"""Reading-comprehension data: SQuAD v1.1 (local JSON files or the hub) encoded into compact arrays.

The search driver calls `load_reading_comprehension` once; the result, a
`ReadingComprehensionData`, is shipped to every trial. Two steps, usable separately:

* `load_squad_splits` reads the official nested JSON (plain or .gz; see `trainables.data.squad`),
  or the hub dataset (`squad`) when no local file is configured or found, both as one row per
  question: id, title, context, question, answers {text, answer_start}.
* `encode_squad` tokenizes with character offsets and packs every split into int arrays.

Rules (each documented here because results depend on them):

* **Split by article.** Splits the files (or the hub) do not provide are carved out of train by
  article, never by question, so no paragraph is seen in two splits. Articles are taken in order of
  first appearance, permuted with `numpy.random.default_rng(seed)`; the first
  `round(fraction x articles)` (at least 1) of the permutation go to test, the next ones to
  validation, the rest stay in train. A missing validation split is carved with 10% of the articles
  when the spec gives no fraction.
* **Subset.** `max_examples` keeps the first N questions of a split, in file order (after the split).
* **Tokens** are `\\w+` runs and single other non-space characters (`tokenize_with_offsets`), each
  with its character span, so that a token span maps back to the exact context substring.
* **Answer alignment.** An answer's characters `[answer_start, answer_start + len(text))` must hold
  its text in the context; its token span is then the first token ending after its start through
  the last token starting before its end. It is *exact* when the span's substring equals the text,
  *inexact* when the answer starts or ends inside a token (e.g. "1990" in "1990s"); both are used.
  An answer whose text is not at `answer_start`, or that covers no token, is *unalignable*. The
  counts are in `ReadingComprehensionData.source`.
* **Long contexts.** The model reads at most `max_context_tokens` context tokens. Training
  questions read a window of that size centred on their answer (clipped to the context); dev and
  test questions read the first `max_context_tokens` tokens (truncation): an answer beyond them
  cannot be predicted and scores 0, so EM/F1 are never inflated by dropping questions. Questions
  keep their first `max_question_tokens` tokens.
* **Nothing is dropped silently.** A training question without an aligned answer inside its window
  is left out of training and counted; a dev/test question is always scored against all its gold
  answers (EM/F1), and left out of the dev loss only when its answer is not in the window (counted).

Memory: contexts are stored once per paragraph, tokens as ids into a table of distinct surface
forms (each with its word id and character ids), so a trial holds a few int32 arrays; batches are
built lazily from them. Context strings and token character spans are kept for dev and test only
(to map predictions back to text).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainables._lazy import lazy_import
from trainables.data.common import (
    SPLIT_NAMES,
    UNK_ID,
    CharVocabulary,
    DataError,
    build_vocab,
    char_codes,
    fractions_to_carve,
    read_local_or_hub,
)
from trainables.data.section import Section, check_carve, check_max_examples, check_minimum, check_sources
from trainables.data.squad import HubSquadSource, SquadFiles, read_squad_file, split_by_article, squad_hub_splits
from trainables.data.subword_spans import SubwordReadingData, check_windows, encode_windows
from trainables.data.subwords import add_subwords

datasets = lazy_import("datasets")

# Row batch for `datasets` iteration: bounds the Python objects alive while encoding.
_ROWS_PER_CHUNK = 1000
_TOKEN = re.compile(r"\w+|[^\w\s]")
# Type ids 0 and 1 are reserved: padding, and the placeholder token an empty text gets.
PAD_TYPE, PLACEHOLDER_TYPE = 0, 1


@dataclass(frozen=True)
class ReadingComprehensionDataSpec:
    """What to load and how to encode it (see the module docstring for the rules).

    Attributes:
        name: Short dataset name for messages.
        hub: The hub dataset, tried only when no local file is configured or one is missing.
        local: Local files under the data root.
        carve: Split -> fraction of train's articles, in (0, 0.5), carved for it when the source
            lacks it.
        max_examples: Split -> questions kept (the first N in file order, N >= 1); absent = all.
        max_context_tokens: Context tokens the model reads (window or truncation); >= 1.
        max_question_tokens: Question tokens kept; >= 1.
        lowercase_words: Lowercase tokens for the word vocabulary (characters keep their case).
        min_freq, max_vocab: Word vocabulary from train: words seen at least min_freq (>= 1) times,
            at most max_vocab (>= 3) entries counting "<pad>" and "<unk>".
        max_word_length: Characters kept per token for the character encoder; >= 1.
        subword_max_length, subword_stride: A pretrained encoder's windows: sub-words per window
            (question and special tokens included; >= 96) and overlap between windows (>= 0, less
            than the window's room for context) (`trainables.data.subword_spans`).
        pretrained: Models to tokenize for; filled in by the engine from the space, not the file.
    """

    name: str
    hub: HubSquadSource | None = None
    local: SquadFiles | None = None
    carve: Mapping[str, float] = field(default_factory=dict)
    max_examples: Mapping[str, int] = field(default_factory=dict)
    max_context_tokens: int = 400
    max_question_tokens: int = 40
    lowercase_words: bool = True
    min_freq: int = 1
    max_vocab: int = 100_000
    max_word_length: int = 16
    subword_max_length: int = 384
    subword_stride: int = 128
    pretrained: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_sources(
            self.hub, self.local,
            "a dataset needs `hub` (a hub dataset name such as squad) or `local` (SQuAD JSON files under the data root), or both",
        )
        check_carve(self.carve, "train's articles")
        check_max_examples(self.max_examples)
        check_windows(self.subword_max_length, self.subword_stride)
        check_minimum("max_context_tokens", self.max_context_tokens, 1)
        check_minimum("max_question_tokens", self.max_question_tokens, 1)
        check_minimum("min_freq", self.min_freq, 1)
        check_minimum("max_vocab", self.max_vocab, 3)
        check_minimum("max_word_length", self.max_word_length, 1)

    @classmethod
    def from_section(cls, section: Section) -> ReadingComprehensionDataSpec:
        """The `data:` section of a reading-comprehension study file."""
        section.check_keys((
            "name", "hub", "local", "carve", "max_examples", "max_context_tokens", "max_question_tokens",
            "lowercase_words", "min_freq", "max_vocab", "max_word_length", "subword_max_length", "subword_stride",
        ))
        hub = section.section("hub", required=False)
        local = section.section("local", required=False)
        carve = section.section("carve", required=False)
        limits = section.section("max_examples", required=False)
        return section.build(
            cls,
            name=section.string("name", "dataset"),
            hub=HubSquadSource.from_section(hub) if hub is not None else None,
            local=SquadFiles.from_section(local) if local is not None else None,
            carve={split: carve.number(split) for split in carve.data} if carve is not None else {},
            max_examples={split: limits.integer(split) for split in limits.data} if limits is not None else {},
            max_context_tokens=section.integer("max_context_tokens", cls.max_context_tokens),
            max_question_tokens=section.integer("max_question_tokens", cls.max_question_tokens),
            lowercase_words=section.boolean("lowercase_words", cls.lowercase_words),
            min_freq=section.integer("min_freq", cls.min_freq),
            max_vocab=section.integer("max_vocab", cls.max_vocab),
            max_word_length=section.integer("max_word_length", cls.max_word_length),
            subword_max_length=section.integer("subword_max_length", cls.subword_max_length),
            subword_stride=section.integer("subword_stride", cls.subword_stride),
        )


# eq=False: the generated __eq__ would compare numpy arrays.
@dataclass(frozen=True, eq=False)
class EncodedQuestions:
    """One split: paragraphs stored once, questions pointing at them.

    Attributes:
        context_types: int32, the type id of every context token, paragraphs concatenated.
        context_offsets: int64 (P+1,); paragraph p is context_types[context_offsets[p]:context_offsets[p+1]].
        paragraph: int32 (Q,), each question's paragraph.
        question_types: int32, question tokens concatenated (at most `max_question_tokens` each).
        question_offsets: int64 (Q+1,).
        window_start: int32 (Q,), the first context token the model reads for this question.
        answer_start, answer_end: int32 (Q,), the training span (token indices within the
            paragraph, inclusive), -1 when no answer is aligned inside the window.
        ids: Question ids (dev/test only; None for train).
        answers: Every gold answer text per question (dev/test only).
        contexts: Paragraph texts (dev/test only).
        token_spans: int32 (tokens, 2), each context token's [start, end) characters in its
            paragraph (dev/test only).
    """

    context_types: np.ndarray
    context_offsets: np.ndarray
    paragraph: np.ndarray
    question_types: np.ndarray
    question_offsets: np.ndarray
    window_start: np.ndarray
    answer_start: np.ndarray
    answer_end: np.ndarray
    ids: list[str] | None = None
    answers: list[list[str]] | None = None
    contexts: list[str] | None = None
    token_spans: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.paragraph.shape[0])

    def context_lengths(self) -> np.ndarray:
        """Tokens each question's model input holds (its window), int64 (Q,)."""
        return np.diff(self.context_offsets)[self.paragraph] - self.window_start

    def question_lengths(self) -> np.ndarray:
        return np.diff(self.question_offsets)

    def answer_text(self, question: int, start: int, end: int) -> str:
        """The exact context substring of tokens [start, end] (paragraph token indices)."""
        assert self.contexts is not None and self.token_spans is not None, "text is kept for dev/test splits only"
        paragraph = int(self.paragraph[question])
        base = int(self.context_offsets[paragraph])
        return self.contexts[paragraph][int(self.token_spans[base + start, 0]):int(self.token_spans[base + end, 1])]


@dataclass(frozen=True, eq=False)
class ReadingComprehensionData:
    """An encoded reading-comprehension dataset, ready to ship to trials.

    Attributes:
        train, validation, test: The splits (test may be None).
        words: Word strings by id; 0 is "<pad>", 1 is "<unk>".
        chars: Characters by id; 0 is "<pad>", 1 is "<unk>".
        type_words: int32 (types,), each token type's word id.
        type_chars: int32 (types, max_word_length), each token type's character ids, 0-padded.
        max_context_tokens: Context tokens the model reads.
        source: One line saying where the data came from, the split and the alignment counts.
        subwords: Pretrained model name -> the same questions in that model's sub-word windows.
    """

    train: EncodedQuestions
    validation: EncodedQuestions
    test: EncodedQuestions | None
    words: list[str]
    chars: list[str]
    type_words: np.ndarray
    type_chars: np.ndarray
    max_context_tokens: int
    source: str
    subwords: Mapping[str, SubwordReadingData] = field(default_factory=dict)

    def vocabularies(self) -> dict[str, Any]:
        """What `search train` writes to vocab.json."""
        return {"words": self.words, "chars": self.chars, "max_context_tokens": self.max_context_tokens}


# --------------------------------------------------------------------------------------------
# Tokens and alignment


def tokenize_with_offsets(text: str) -> tuple[list[str], np.ndarray]:
    """Tokens (`\\w+` runs, single other non-space characters) and their [start, end) spans, int32 (n, 2)."""
    tokens, spans = [], []
    for match in _TOKEN.finditer(text):
        tokens.append(match.group())
        spans.append(match.span())
    return tokens, np.asarray(spans, dtype=np.int32).reshape(-1, 2)


def align_answer(context: str, spans: np.ndarray, answer_start: int, text: str) -> tuple[int, int, bool] | None:
    """(first token, last token, exact) of an answer, or None when it cannot be aligned.

    None when the text is empty, is not found at `answer_start` in the context, or covers no token.
    `exact` is True when the tokens' substring is the text itself.
    """
    answer_end = answer_start + len(text)
    if not text.strip() or answer_start < 0 or context[answer_start:answer_end] != text:
        return None
    first = int(np.searchsorted(spans[:, 1], answer_start, side="right"))
    last = int(np.searchsorted(spans[:, 0], answer_end, side="left")) - 1
    if first >= len(spans) or last < first:
        return None
    exact = context[spans[first, 0]:spans[last, 1]] == text
    return first, last, exact


def load_squad_splits(
    spec: ReadingComprehensionDataSpec, data_root: str | os.PathLike | None, seed: int
) -> tuple[dict[str, datasets.Dataset], str]:
    """The splits, one row per question, and a line saying where they came from.

    Local files are used when every configured file exists; otherwise the hub dataset (only then).
    Missing validation/test splits are carved from train by article; `max_examples` is applied last.
    """
    local, hub = spec.local, spec.hub

    def read_local(paths: dict[str, Path]) -> tuple[dict[str, datasets.Dataset], str]:
        return {split: read_squad_file(path) for split, path in paths.items()}, ""

    def read_hub(loaded: datasets.DatasetDict) -> tuple[dict[str, datasets.Dataset], str]:
        assert hub is not None
        return squad_hub_splits(hub, loaded), ""

    splits, source = read_local_or_hub(
        spec.name, local, hub, data_root, local_format="SQuAD JSON", read_local=read_local, read_hub=read_hub
    )
    fractions = fractions_to_carve(list(splits), spec.carve)
    if fractions:
        carved, note = split_by_article(splits["train"], fractions, seed, spec.name)
        splits = {**splits, **carved}
        source += f"; {note}"
    for split, limit in spec.max_examples.items():
        if split in splits and limit < len(splits[split]):
            source += f"; {split}: first {limit} of {len(splits[split])} questions kept"
            splits[split] = splits[split].select(range(limit))
    return {split: splits[split] for split in SPLIT_NAMES if split in splits}, source


# --------------------------------------------------------------------------------------------
# Encoding


@dataclass
class _Counts:
    """Alignment figures for the source line."""

    exact: int = 0
    inexact: int = 0
    unalignable: int = 0
    outside_window: int = 0
    questions_unusable: int = 0  # train: left out of training; dev/test: left out of the dev loss
    questions_truncated: int = 0
    contexts_truncated: int = 0


class _TypeTable:
    """Distinct token surface forms -> type ids (0 padding, 1 placeholder), counted in train."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.forms: list[str] = ["", ""]
        self.train_counts: list[int] = [0, 0]

    def encode(self, tokens: list[str], in_train: bool) -> list[int]:
        if not tokens:
            return [PLACEHOLDER_TYPE]
        ids = []
        for token in tokens:
            type_id = self.ids.get(token)
            if type_id is None:
                type_id = self.ids[token] = len(self.forms)
                self.forms.append(token)
                self.train_counts.append(0)
            if in_train:
                self.train_counts[type_id] += 1
            ids.append(type_id)
        return ids


def _encode_split(dataset: datasets.Dataset, split: str, types: _TypeTable, spec: ReadingComprehensionDataSpec) -> tuple[EncodedQuestions, _Counts]:
    in_train = split == "train"
    keep_text = not in_train
    counts = _Counts()
    limit = spec.max_context_tokens
    context_chunks: list[np.ndarray] = []
    context_lengths: list[int] = []
    span_chunks: list[np.ndarray] = []
    contexts: list[str] = []
    question_chunks: list[np.ndarray] = []
    question_lengths: list[int] = []
    paragraph_ids: list[int] = []
    windows: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    ids: list[str] = []
    gold: list[list[str]] = []

    previous: tuple[str, str] | None = None
    spans = np.zeros((0, 2), dtype=np.int32)
    context = ""
    for batch in dataset.iter(batch_size=_ROWS_PER_CHUNK):
        for title, context_text, question, answers, question_id in zip(batch["title"], batch["context"], batch["question"], batch["answers"], batch["id"]):
            # Questions of one paragraph are consecutive in SQuAD: the paragraph is encoded once.
            if previous != (title, context_text):
                previous, context = (title, context_text), context_text
                tokens, spans = tokenize_with_offsets(context)
                if not tokens:
                    spans = np.zeros((1, 2), dtype=np.int32)
                context_chunks.append(np.asarray(types.encode(tokens, in_train), dtype=np.int32))
                context_lengths.append(len(spans))
                if keep_text:
                    span_chunks.append(spans)
                    contexts.append(context)
                counts.contexts_truncated += len(spans) > limit
            question_tokens = tokenize_with_offsets(question)[0]
            counts.questions_truncated += len(question_tokens) > spec.max_question_tokens
            question_chunks.append(np.asarray(types.encode(question_tokens[: spec.max_question_tokens], in_train), dtype=np.int32))
            question_lengths.append(len(question_chunks[-1]))
            paragraph_ids.append(len(context_lengths) - 1)

            span = None
            for text, answer_start in zip(answers["text"], answers["answer_start"]):
                aligned = align_answer(context, spans, answer_start, text)
                if aligned is None:
                    counts.unalignable += 1
                    continue
                counts.exact += aligned[2]
                counts.inexact += not aligned[2]
                span = span or aligned[:2]
            window = 0
            if span is not None and in_train:
                first, last = span
                if last - first + 1 > limit:
                    span = None
                else:  # a window of `limit` tokens centred on the answer, clipped to the context
                    window = max(0, min(len(spans) - limit, (first + last) // 2 - limit // 2))
            if span is not None and not window <= span[0] <= span[1] < window + limit:
                counts.outside_window += 1
                span = None
            counts.questions_unusable += span is None
            windows.append(window)
            starts.append(span[0] if span else -1)
            ends.append(span[1] if span else -1)
            if keep_text:
                ids.append(question_id)
                gold.append(list(answers["text"]))

    def offsets(lengths: list[int]) -> np.ndarray:
        out = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=out[1:])
        return out

    encoded = EncodedQuestions(
        context_types=np.concatenate(context_chunks) if context_chunks else np.zeros(0, np.int32),
        context_offsets=offsets(context_lengths),
        paragraph=np.asarray(paragraph_ids, dtype=np.int32),
        question_types=np.concatenate(question_chunks) if question_chunks else np.zeros(0, np.int32),
        question_offsets=offsets(question_lengths),
        window_start=np.asarray(windows, dtype=np.int32),
        answer_start=np.asarray(starts, dtype=np.int32),
        answer_end=np.asarray(ends, dtype=np.int32),
        ids=ids if keep_text else None,
        answers=gold if keep_text else None,
        contexts=contexts if keep_text else None,
        token_spans=np.concatenate(span_chunks) if keep_text and span_chunks else None,
    )
    return encoded, counts


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _describe_counts(split: str, counts: _Counts, questions: int, spec: ReadingComprehensionDataSpec) -> str:
    answers = counts.exact + counts.inexact + counts.unalignable
    line = (
        f"{split}: {_plural(questions, 'question')}, {_plural(answers, 'answer')} ({counts.exact} exact token spans, "
        f"{counts.inexact} inside tokens, {counts.unalignable} unalignable)"
    )
    if counts.outside_window:
        line += f", {_plural(counts.outside_window, 'question')} with the answer beyond {spec.max_context_tokens} tokens"
    if counts.questions_unusable:
        line += f", {_plural(counts.questions_unusable, 'question')} left out of {'training' if split == 'train' else 'the dev loss (still scored)'}"
    if counts.contexts_truncated:
        line += f", {_plural(counts.contexts_truncated, 'context')} over {spec.max_context_tokens} tokens ({'windowed' if split == 'train' else 'truncated'})"
    return line


def encode_squad(splits: Mapping[str, datasets.Dataset], spec: ReadingComprehensionDataSpec, source: str = "") -> ReadingComprehensionData:
    """Tokenize and pack every split; vocabularies from the training split only."""
    for required in ("train", "validation"):
        if required not in splits:
            raise DataError(f"dataset {spec.name!r}: no {required} split (have: {', '.join(splits)})")
    types = _TypeTable()
    encoded: dict[str, EncodedQuestions] = {}
    notes = []
    train_types = 0
    for split in SPLIT_NAMES:  # train first: the type table counts train occurrences
        if split not in splits:
            continue
        if len(splits[split]) == 0:
            raise DataError(f"dataset {spec.name!r}: the {split} split has no questions")
        encoded[split], counts = _encode_split(splits[split], split, types, spec)
        notes.append(_describe_counts(split, counts, len(encoded[split]), spec))
        if split == "train":
            train_types = len(types.forms)
    if int((encoded["train"].answer_start >= 0).sum()) == 0:
        raise DataError(f"dataset {spec.name!r}: no training question has an answer that can be aligned to the context")

    train_forms = types.forms[2:train_types]
    word_counts: Counter[str] = Counter()
    for form, count in zip(train_forms, types.train_counts[2:train_types]):
        word_counts[form.lower() if spec.lowercase_words else form] += count
    words = build_vocab(word_counts, spec.min_freq, spec.max_vocab)
    word_ids = {word: index for index, word in enumerate(words)}
    forms = [form.lower() for form in types.forms] if spec.lowercase_words else types.forms
    type_words = np.fromiter((word_ids.get(form, UNK_ID) for form in forms), dtype=np.int32, count=len(forms))
    type_words[PAD_TYPE] = 0

    chars = CharVocabulary(char_codes(train_forms, spec.max_word_length)[0])
    codes, lengths = char_codes(types.forms, spec.max_word_length)
    type_chars = np.zeros((len(types.forms), spec.max_word_length), dtype=np.int32)
    rows = np.repeat(np.arange(len(types.forms)), lengths)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    type_chars[rows, cols] = chars.lookup(codes)
    type_chars[PLACEHOLDER_TYPE, 0] = UNK_ID
    return ReadingComprehensionData(
        train=encoded["train"], validation=encoded["validation"], test=encoded.get("test"),
        words=words, chars=chars.chars, type_words=type_words, type_chars=type_chars,
        max_context_tokens=spec.max_context_tokens,
        source="; ".join([source, *notes]) if source else "; ".join(notes),
    )


def load_reading_comprehension(
    spec: ReadingComprehensionDataSpec, data_root: str | os.PathLike | None = None, seed: int = 0
) -> ReadingComprehensionData:
    """Load (`load_squad_splits`) and encode (`encode_squad`) a SQuAD-format dataset."""
    splits, source = load_squad_splits(spec, data_root, seed)
    data = encode_squad(splits, spec, source)
    return add_subwords(data, spec.pretrained, lambda model: encode_windows(splits, model, data_root, spec.subword_max_length, spec.subword_stride))
