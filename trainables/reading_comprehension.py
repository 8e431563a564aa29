"""Extractive reading comprehension as a task of the trial runner: SQuAD questions batched with
their contexts, BiDAF, SQuAD exact match and F1 on a split.

Metrics: SQuAD exact match and F1 (official normalization, max over all gold answers, fractions
in [0, 1]) and the dev loss (mean start/end negative log-likelihood of the gold span, the same for
every strategy so that it compares). Only training questions with an aligned answer in their
window are trained on (the data's source line counts the others).

A strategy with the `transformer` encoder reads question + context windows in its model's
sub-words (`trainables.data.subword_spans`): each window scores a start and an end per sub-word,
and a question's answer is the best span over all its windows (`best_answers`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from spaces import READING_COMPREHENSION, Offer
from spaces import Strategy
from spaces.encoders import SUBWORDS, WORDS
from spaces.loss_terms import PAIRED_ENCODINGS
from spaces.losses import GOLD_LOG_PROB
from spaces.regularizers import LOOP, MODEL
from trainables.bidaf import BiDAF, SpanScores, best_spans, build_bidaf, span_log_probs
from trainables.optimization import Precision
from trainables.data import EncodedQuestions, ReadingComprehensionData, ReadingComprehensionDataSpec, load_reading_comprehension
from trainables.data.subword_spans import SubwordReadingData, SubwordWindows, best_over_windows, window_batches
from trainables.squad_metrics import squad_scores
from trainables.task import TRAINING_EXTRAS_OFFERS, Batch, Task, TrialModel, build_loss, published_baseline

EVAL_BATCH_SIZE = 64
# Training batches are drawn from pools of this many batches sorted by context length, so a batch
# holds contexts of similar length (less padding) while the batch order stays random.
_POOL_BATCHES = 50


@dataclass
class SpanBatch(Batch):
    """Padded model inputs for some questions; `start`/`end` are relative to each question's window
    (-1 when the question has no gold span there)."""

    index: np.ndarray
    context_words: torch.Tensor
    context_chars: torch.Tensor
    context_mask: torch.Tensor
    question_words: torch.Tensor
    question_chars: torch.Tensor
    question_mask: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    paragraph: torch.Tensor

    def __len__(self) -> int:
        return len(self.index)

    def inputs(self) -> tuple[torch.Tensor, ...]:
        return self.context_words, self.context_chars, self.context_mask, self.question_words, self.question_chars, self.question_mask


def _ragged(types: np.ndarray, starts: np.ndarray, lengths: np.ndarray, data: ReadingComprehensionData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(word ids [B, T], char ids [B, T, W], mask [B, T]) of rows types[starts[b]:starts[b] + lengths[b]]."""
    width = int(lengths.max())
    rows = np.repeat(np.arange(len(starts)), lengths)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded = np.zeros((len(starts), width), dtype=np.int64)
    padded[rows, cols] = types[np.repeat(starts, lengths) + cols]
    chars = data.type_chars[padded]
    char_width = max(1, int((chars != 0).any(axis=(0, 1)).sum()))  # characters are left-aligned
    mask = np.arange(width)[None, :] < lengths[:, None]
    return torch.from_numpy(data.type_words[padded].astype(np.int64)), torch.from_numpy(chars[:, :, :char_width].astype(np.int64)), torch.from_numpy(mask)


def batches(
    split: EncodedQuestions, data: ReadingComprehensionData, questions: np.ndarray, batch_size: int, *, shuffle: bool, rng: np.random.Generator | None = None,
) -> Iterator[SpanBatch]:
    """Batches of `questions` (indices into `split`), built lazily from the encoded arrays.

    Shuffled: random pools of `_POOL_BATCHES` batches, each sorted by context length, batches in
    random order. Otherwise sorted by context length (stable).
    """
    context_lengths = np.minimum(split.context_lengths(), data.max_context_tokens)
    if shuffle:
        assert rng is not None, "shuffled batches need a random generator"
        order = questions[rng.permutation(len(questions))]
        pool = _POOL_BATCHES * batch_size
        order = np.concatenate([chunk[np.argsort(context_lengths[chunk], kind="stable")] for chunk in np.split(order, range(pool, len(order), pool))]) if len(order) else order
        starts = list(range(0, len(order), batch_size))
        starts = [starts[i] for i in rng.permutation(len(starts))]
    else:
        order = questions[np.argsort(context_lengths[questions], kind="stable")]
        starts = list(range(0, len(order), batch_size))
    question_lengths = split.question_lengths()
    for first in starts:
        index = order[first:first + batch_size]
        window = split.window_start[index].astype(np.int64)
        context = _ragged(split.context_types, split.context_offsets[split.paragraph[index]] + window, context_lengths[index], data)
        question = _ragged(split.question_types, split.question_offsets[index], question_lengths[index], data)
        has_span = split.answer_start[index] >= 0
        start = np.where(has_span, split.answer_start[index] - window, -1)
        end = np.where(has_span, split.answer_end[index] - window, -1)
        yield SpanBatch(index, *context, *question, torch.from_numpy(start.astype(np.int64)), torch.from_numpy(end.astype(np.int64)), torch.from_numpy(split.paragraph[index].astype(np.int64)))


@torch.no_grad()
def evaluate_split(
    model: BiDAF, split: EncodedQuestions, data: ReadingComprehensionData, device: torch.device, precision: Precision, max_answer_length: int,
) -> dict[str, float]:
    """Exact match and F1 (every question, all gold answers) and the dev loss (questions with a gold span in their window)."""
    model.eval()
    assert split.answers is not None, "dev and test splits keep their gold answers"
    predictions = [""] * len(split)
    nll_sum, nll_rows = 0.0, 0
    for batch in batches(split, data, np.arange(len(split)), EVAL_BATCH_SIZE, shuffle=False):
        batch = batch.to(device)
        with precision.autocast():
            scores = model(*batch.inputs())
        valid = batch.start >= 0
        if bool(valid.any()):
            gold_start = scores.start_log_p[valid].gather(1, batch.start[valid].unsqueeze(1))
            gold_end = scores.end_log_p[valid].gather(1, batch.end[valid].unsqueeze(1))
            nll_sum += float(-(gold_start + gold_end).sum() / 2)
            nll_rows += int(valid.sum())
        starts, ends = best_spans(scores.start_log_p, scores.end_log_p, batch.context_mask, max_answer_length)
        window = split.window_start[batch.index]
        for row, question in enumerate(batch.index):
            predictions[question] = split.answer_text(int(question), int(window[row] + starts[row]), int(window[row] + ends[row]))
    return {**squad_scores(predictions, split.answers), "loss": nll_sum / max(nll_rows, 1)}


@dataclass
class WindowBatch(Batch):
    """Question + context windows in a pretrained model's sub-words; `start`/`end` are the gold
    positions in each window (0, the first token, when the answer is in another window)."""

    index: np.ndarray  # window indices in the split
    ids: torch.Tensor  # [B, S]
    mask: torch.Tensor  # [B, S]
    types: torch.Tensor | None  # [B, S] token types, for models that have them
    candidates: torch.Tensor  # [B, S] where the loss may put a start or an end: the first token and the context
    context: torch.Tensor  # [B, S] where an answer may start or end
    start: torch.Tensor
    end: torch.Tensor

    def __len__(self) -> int:
        return len(self.index)


def window_batches_of(split: SubwordWindows, pad: int, batch_size: int, windows: np.ndarray, rng: np.random.Generator | None = None) -> Iterator[WindowBatch]:
    for arrays in window_batches(split, pad, batch_size, windows, rng):
        types = torch.from_numpy(arrays.types) if arrays.types is not None else None
        yield WindowBatch(arrays.index, torch.from_numpy(arrays.ids), torch.from_numpy(arrays.mask), types, torch.from_numpy(arrays.candidates),
                          torch.from_numpy(arrays.context), torch.from_numpy(arrays.start), torch.from_numpy(arrays.end))


@dataclass
class WindowScores:
    """A span extractor's start and end scores per sub-word [B, S] (unnormalised)."""

    start: torch.Tensor
    end: torch.Tensor

    def log_probs(self, candidates: torch.Tensor) -> SpanScores:
        """Start and end log-probabilities over each window's candidate positions, as a loss reads them."""
        floor = torch.finfo(torch.float32).min
        start = torch.log_softmax(self.start.float().masked_fill(~candidates, floor), dim=-1)
        end = torch.log_softmax(self.end.float().masked_fill(~candidates, floor), dim=-1)
        return SpanScores(start, end, None, None)  # type: ignore[arg-type]  # no pooled encodings: loss terms are refused


@torch.no_grad()
def window_best_spans(scores: WindowScores, context: torch.Tensor, max_answer_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each window's best span: (starts, ends, scores) of the highest start + end score over its
    context positions with start <= end < start + max_answer_length (-inf for a window without context)."""
    start, end = scores.start.float(), scores.end.float()
    starts, ends = best_spans(start, end, context, max_answer_length)
    best = start.gather(1, starts[:, None]).squeeze(1) + end.gather(1, ends[:, None]).squeeze(1)
    best = best.masked_fill(~context.any(dim=1), float("-inf"))
    return starts.cpu().numpy(), ends.cpu().numpy(), best.cpu().numpy()


def best_answers(scores: WindowScores, context: torch.Tensor, question: np.ndarray, questions: int, max_answer_length: int) -> list[tuple[int, int, int] | None]:
    """Per question, (window, start, end) of the best span over all its windows (`question`: each
    window's question, < `questions`); None for a question whose windows hold no context."""
    return best_over_windows(question, *window_best_spans(scores, context, max_answer_length), questions)


@torch.no_grad()
def evaluate_windows(model: nn.Module, split: SubwordWindows, data: SubwordReadingData, device: torch.device, precision: Precision, max_answer_length: int) -> dict[str, float]:
    """Exact match and F1 (every question, all gold answers) and the dev loss (windows with a target)."""
    model.eval()
    assert split.answers is not None, "dev and test splits keep their gold answers"
    windows, starts, ends, best = [], [], [], []
    nll_sum, nll_rows = 0.0, 0
    for batch in window_batches_of(split, data.model.pad_id, EVAL_BATCH_SIZE, np.arange(len(split))):
        windows.append(batch.index)
        batch = batch.to(device)
        with precision.autocast():
            scores = WindowScores(*model(batch.ids, batch.mask, batch.types))
        log_p = scores.log_probs(batch.candidates)
        valid = batch.start >= 0
        if bool(valid.any()):
            gold = log_p.start_log_p[valid].gather(1, batch.start[valid, None]) + log_p.end_log_p[valid].gather(1, batch.end[valid, None])
            nll_sum += float(-gold.sum() / 2)
            nll_rows += int(valid.sum())
        for found, part in zip((starts, ends, best), window_best_spans(scores, batch.context, max_answer_length)):
            found.append(part)
    index = np.concatenate(windows)
    answers = best_over_windows(split.question[index], np.concatenate(starts), np.concatenate(ends), np.concatenate(best), len(split.answers))
    predictions = [split.answer_text(int(index[found[0]]), found[1], found[2]) if found is not None else "" for found in answers]
    return {**squad_scores(predictions, split.answers), "loss": nll_sum / max(nll_rows, 1)}


def max_answer_length(strategy: Strategy) -> int:
    _, params = strategy.choice("decoder")
    return int(params["max_answer_length"])


def _answerable(data: ReadingComprehensionData | SubwordReadingData) -> np.ndarray:
    """The training questions (windows, for a pretrained encoder) that have a target."""
    if isinstance(data, SubwordReadingData):
        return np.flatnonzero(data.train.start >= 0)
    return np.flatnonzero(data.train.answer_start >= 0)


class ReadingComprehension(Task):
    name = "reading_comprehension"
    registries = READING_COMPREHENSION
    metrics = {"f1": "max", "exact_match": "max", "loss": "min"}
    offers = {
        "loss": (Offer(frozenset({GOLD_LOG_PROB}), why="log p(gold start) and log p(gold end) over the context's tokens"),),
        "loss_terms": (
            Offer(frozenset({PAIRED_ENCODINGS}), why="each question's encoding and its context's"),
            Offer(frozenset({SUBWORDS}), when=("encoder", "transformer"), why="a pretrained encoder reads question and context as one window: no separate encodings"),
        ),
        "regularizers": (Offer(frozenset({LOOP, MODEL})),),
        **TRAINING_EXTRAS_OFFERS,
        "augmentation": (Offer(frozenset({"spans"}), why="questions, contexts and answer spans, which no augmentation kind rewrites yet"),),
        "encoder": (Offer(frozenset({WORDS, SUBWORDS}), why="word and character features, and a pretrained model's own sub-words"),),
        "char_encoder": (Offer(frozenset({SUBWORDS}), when=("encoder", "transformer"), why="a pretrained encoder's sub-words only"),),
    }
    data_spec = ReadingComprehensionDataSpec
    # The research's BiDAF (embedding 100, hidden 100, 1 layer, dropout 0.2; see
    # `published_baseline` for what it does not give). Not given either: the character CNN, here
    # with BiDAF's 100 filters over 25-dim characters (the smallest size our space offers), no
    # contrastive loss term, and answers of at most 30 tokens.
    baselines = {
        "bidaf": published_baseline(
            char_encoder=("cnn", {"char_dim": 25, "filters": 100}), encoder=("bilstm", {"hidden": 100, "layers": 1}),
            decoder=("best_span", {"max_answer_length": 30}), embedding_dim=100, dropout=0.2,
        ),
    }

    def load_data(self, spec: ReadingComprehensionDataSpec, data_root: str | None, seed: int) -> ReadingComprehensionData:
        return load_reading_comprehension(spec, data_root, seed)


    def build(self, strategy: Strategy, data: ReadingComprehensionData | SubwordReadingData) -> TrialModel:
        if isinstance(data, SubwordReadingData):
            from trainables.pretrained import build_span_extractor

            return TrialModel(strategy, build_span_extractor(strategy, data.model), build_loss(strategy, data.max_length))
        model = build_bidaf(strategy, len(data.words), len(data.chars))
        # The loss sees one "class" per context position the model can read.
        return TrialModel(strategy, model, build_loss(strategy, data.max_context_tokens))

    def train_size(self, data: ReadingComprehensionData | SubwordReadingData) -> int:
        return len(_answerable(data))

    def train_batches(self, data: ReadingComprehensionData | SubwordReadingData, batch_size: int, rng: np.random.Generator) -> Iterator[SpanBatch | WindowBatch]:
        if isinstance(data, SubwordReadingData):
            return window_batches_of(data.train, data.model.pad_id, batch_size, _answerable(data), rng)
        return batches(data.train, data, _answerable(data), batch_size, shuffle=True, rng=rng)

    def forward(self, model: nn.Module, batch: SpanBatch | WindowBatch) -> SpanScores | WindowScores:
        if isinstance(batch, WindowBatch):
            return WindowScores(*model(batch.ids, batch.mask, batch.types))
        return model(*batch.inputs())

    def loss(self, trial: TrialModel, outputs: SpanScores | WindowScores, batch: SpanBatch | WindowBatch) -> torch.Tensor:
        """The loss family on the start and end positions (mean of the two), over rows with a gold span."""
        if isinstance(outputs, WindowScores):
            return trial.loss.from_gold(span_log_probs(outputs.log_probs(batch.candidates), batch.start, batch.end, batch.candidates))
        return trial.loss.from_gold(span_log_probs(outputs, batch.start, batch.end, batch.context_mask))

    def paired_encodings(self, outputs: SpanScores, batch: SpanBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each question with its context; questions of one paragraph are not each other's negatives."""
        return outputs.question_vector, outputs.context_vector, batch.paragraph

    def evaluate(self, trial: TrialModel, data: ReadingComprehensionData | SubwordReadingData, split: str, precision: Any) -> dict[str, float]:
        if isinstance(data, SubwordReadingData):
            return evaluate_windows(trial.model, getattr(data, split), data, trial.device, precision, max_answer_length(trial.strategy))
        return evaluate_split(trial.model, getattr(data, split), data, trial.device, precision, max_answer_length(trial.strategy))  # type: ignore[arg-type]


    def save_pretrained(self, config: dict[str, Any], data: ReadingComprehensionData, checkpoint_dir: str, out_dir: str) -> str | None:
        encoded = self.data_for(config, data)
        if not isinstance(encoded, SubwordReadingData):
            return None
        from trainables.pretrained_folder import save_folder
        from trainables.runner import load_state

        strategy = Strategy.from_config(config)
        model = self.build(strategy, encoded).model
        model.load_state_dict(load_state(checkpoint_dir)["model"])
        ours = {"addons": dict(strategy.addons)} if model.own_head else {}
        return save_folder(model, encoded.model, out_dir, "AutoModelForQuestionAnswering", ours)


TASK = ReadingComprehension()
# The trial function Ray runs for this task: (config, data, settings, report=None) -> None.
train_reading_comprehension = TASK.trainable
