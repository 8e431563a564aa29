"""The reading-comprehension trainable: one sampled BiDAF strategy, trained and reported once per epoch.

Metrics on the dev split: SQuAD exact match and F1 (official normalization, max over all gold
answers, fractions in [0, 1]) and the dev loss (mean start/end negative log-likelihood of the gold
span, the same for every strategy so that it compares). `evaluate_split` scores any split (the test
split for the best trial, after the search).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from spaces._space import Strategy
from spaces.loss_terms import LOSS_TERMS
from spaces.losses import LOSSES
from trainables import _loop
from trainables.bidaf import BiDAF, best_spans, build_bidaf, span_loss
from trainables.data import EncodedQuestions
from trainables.data import ReadingComprehensionData as QaData  # the old name, kept for this file's body
from trainables.squad_metrics import squad_scores

METRICS = {"f1": "max", "exact_match": "max", "loss": "min"}
EVAL_BATCH_SIZE = 64
# Training batches are drawn from pools of this many batches sorted by context length, so a batch
# holds contexts of similar length (less padding) while the batch order stays random.
_POOL_BATCHES = 50


@dataclass
class QaBatch:
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

    def to(self, device: torch.device) -> QaBatch:
        return QaBatch(self.index, *(getattr(self, f.name).to(device) for f in fields(self)[1:]))

    def inputs(self) -> tuple[torch.Tensor, ...]:
        return self.context_words, self.context_chars, self.context_mask, self.question_words, self.question_chars, self.question_mask


def _ragged(types: np.ndarray, starts: np.ndarray, lengths: np.ndarray, data: QaData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    split: EncodedQuestions, data: QaData, questions: np.ndarray, batch_size: int, *, shuffle: bool, rng: np.random.Generator | None = None,
) -> Iterator[QaBatch]:
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
        yield QaBatch(index, *context, *question, torch.from_numpy(start.astype(np.int64)), torch.from_numpy(end.astype(np.int64)), torch.from_numpy(split.paragraph[index].astype(np.int64)))


@torch.no_grad()
def evaluate_split(
    model: BiDAF, split: EncodedQuestions, data: QaData, device: torch.device, precision: _loop.Precision, max_answer_length: int,
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


def _build(config: dict[str, Any], data: QaData, settings: _loop.TrialSettings) -> tuple[Strategy, BiDAF, torch.nn.Module, torch.nn.Module | None, torch.device, _loop.Precision]:
    strategy = Strategy.from_config(config)
    device = _loop.pick_device()
    precision = _loop.Precision(device, settings.mixed_precision)
    model = build_bidaf(strategy, len(data.words), len(data.chars)).to(device)
    loss_name, loss_params = strategy.loss
    # The loss sees one "class" per context position the model can read.
    loss_fn = LOSSES[loss_name].build(data.max_context_tokens, **loss_params).to(device)
    terms = strategy.toggles.get("loss_terms", {})
    contrastive = LOSS_TERMS["infonce"].build(**terms["infonce"]) if "infonce" in terms else None
    return strategy, model, loss_fn, contrastive, device, precision


def max_answer_length(strategy: Strategy) -> int:
    _, params = strategy.choice("decoder")
    return int(params["max_answer_length"])


def train_reading_comprehension(
    config: dict[str, Any],
    data: QaData,
    settings: _loop.TrialSettings,
    report: _loop.Reporter | None = None,
) -> None:
    """Trains one BiDAF strategy for up to `settings.max_epochs`, reporting after every epoch.

    Without `report` it runs as a Ray Tune trial: reports go to Tune, and it resumes from the
    checkpoint Tune hands it, if any. Only training questions with an aligned answer in their
    window are trained on (the data's source line counts the others).
    """
    report, in_tune = _loop.start_trial(settings, report)
    strategy, model, loss_fn, contrastive, device, precision = _build(config, data, settings)
    trainable = np.flatnonzero(data.train.answer_start >= 0)
    steps_per_epoch = math.ceil(len(trainable) / strategy.batch_size)
    optimization, rng, modules, first_epoch, param_count = _loop.prepare_training(
        strategy, model, loss_fn, settings, steps_per_epoch, precision, METRICS.get(settings.metric, settings.mode), in_tune,
    )
    for epoch in range(first_epoch, settings.max_epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_total, contrastive_total, questions = 0.0, 0.0, 0
        for step, batch in enumerate(batches(data.train, data, trainable, strategy.batch_size, shuffle=True, rng=rng)):
            batch = batch.to(device)
            with precision.autocast():
                scores = model(*batch.inputs())
            loss = span_loss(loss_fn, strategy.loss, scores, batch.start, batch.end, batch.context_mask)
            objective = loss + optimization.penalty()
            if contrastive is not None:
                term = contrastive(scores.question_vector, scores.context_vector, batch.paragraph)
                objective = objective + term
                contrastive_total += term.item() * len(batch.index)
            _loop.check_finite(objective, epoch, step)
            optimization.step(objective)
            loss_total += loss.item() * len(batch.index)
            questions += len(batch.index)
        train_seconds = time.perf_counter() - started

        dev = evaluate_split(model, data.validation, data, device, precision, max_answer_length(strategy))
        optimization.end_epoch(dev[settings.metric])
        metrics = {
            **dev,
            "train_loss": loss_total / questions,
            "epoch": epoch,
            "param_count": param_count,
            "train_seconds": train_seconds,
            "questions_per_second": questions / train_seconds,
            "lr": optimization.lr,
        }
        if contrastive is not None:
            metrics["train_contrastive_loss"] = contrastive_total / questions
        _loop.report_epoch(report, metrics, settings, modules, rng, epoch)


def evaluate_checkpoint(config: dict[str, Any], data: QaData, settings: _loop.TrialSettings, checkpoint_dir: str, split: str = "test") -> dict[str, float]:
    """Scores a trial's saved model on a split (the test split for the best trial)."""
    strategy, model, _, _, device, precision = _build(config, data, settings)
    state = _loop.load_state(checkpoint_dir)
    if state is None:
        raise FileNotFoundError(f"no model state in {checkpoint_dir}")
    model.load_state_dict(state["model"])
    return evaluate_split(model, getattr(data, split), data, device, precision, max_answer_length(strategy))
