"""The NER trainable: one sampled tagging strategy, trained and reported once per epoch.

Metrics are seqeval's entity-level precision, recall and F1 (micro, conlleval's default mode) on
the dev split, plus F1 per entity type; `evaluate_split` scores any split (the test split for the
best trial, after the search).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from seqeval.metrics import classification_report

from spaces._space import Strategy
from spaces.losses import IGNORE_INDEX, LOSSES
from trainables import _loop
from trainables.data import EncodedSentences, NerData
from trainables.tagger import Tagger, build_tagger, tagging_loss

METRICS = {"f1": "max", "precision": "max", "recall": "max"}


def batches(
    split: EncodedSentences, batch_size: int, *, shuffle: bool, rng: np.random.Generator | None = None
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(sentence indices, words [B, T], chars [B, T, L], tags [B, T], mask [B, T]), padded per batch.

    Built with array indexing only (no Python loop over tokens): padding words are 0, padding
    characters 0, padding tags IGNORE_INDEX.
    """
    lengths = split.lengths()
    order = rng.permutation(len(split)) if shuffle else np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        sentence_lengths = lengths[index]
        width = int(sentence_lengths.max())
        rows = np.repeat(np.arange(len(index)), sentence_lengths)
        cols = np.arange(len(rows)) - np.repeat(np.cumsum(sentence_lengths) - sentence_lengths, sentence_lengths)
        token_ids = split.offsets[index].repeat(sentence_lengths) + cols  # positions in the flat arrays

        words = np.zeros((len(index), width), dtype=np.int64)
        words[rows, cols] = split.words[token_ids]
        tags = np.full((len(index), width), IGNORE_INDEX, dtype=np.int64)
        tags[rows, cols] = split.tags[token_ids]

        char_starts = split.char_offsets[token_ids]
        char_lengths = split.char_offsets[token_ids + 1] - char_starts
        char_width = int(char_lengths.max())
        positions = np.arange(char_width)
        inside = positions[None, :] < char_lengths[:, None]
        flat = np.where(inside, split.chars[np.minimum(char_starts[:, None] + positions, len(split.chars) - 1)], 0)
        chars = np.zeros((len(index), width, char_width), dtype=np.int64)
        chars[rows, cols] = flat

        words_t = torch.from_numpy(words)
        mask = torch.from_numpy(np.arange(width)[None, :] < sentence_lengths[:, None])
        yield index, words_t, torch.from_numpy(chars), torch.from_numpy(tags), mask


@torch.no_grad()
def evaluate_split(model: Tagger, split: EncodedSentences, data: NerData, device: torch.device, precision: _loop.Precision) -> dict[str, float]:
    """Entity-level precision, recall, F1 (micro) and F1 per type, with seqeval."""
    model.eval()
    gold_sequences: list[list[str]] = []
    predicted_sequences: list[list[str]] = []
    for _, words, chars, tags, mask in batches(split, 128, shuffle=False):
        words, chars, mask = words.to(device), chars.to(device), mask.to(device)
        with precision.autocast():
            emissions = model.emissions(words, chars, mask)
        predicted = model.decode(emissions.float(), mask).cpu().numpy()
        lengths = mask.sum(dim=1).cpu().numpy()
        gold = tags.numpy()
        for row, length in enumerate(lengths):
            gold_sequences.append([data.tags[t] for t in gold[row, :length]])
            predicted_sequences.append([data.tags[t] for t in predicted[row, :length]])
    report = classification_report(gold_sequences, predicted_sequences, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    metrics = {"f1": float(micro["f1-score"]), "precision": float(micro["precision"]), "recall": float(micro["recall"])}
    for entity_type, scores in report.items():
        if not entity_type.endswith(" avg"):
            metrics[f"f1_{entity_type}"] = float(scores["f1-score"])
    return metrics


def _build(config: dict[str, Any], data: NerData, settings: _loop.TrialSettings) -> tuple[Strategy, Tagger, torch.nn.Module, torch.device, _loop.Precision]:
    strategy = Strategy.from_config(config)
    device = _loop.pick_device()
    precision = _loop.Precision(device, settings.mixed_precision)
    model = build_tagger(strategy, len(data.words), len(data.chars), data.tags, data.scheme).to(device)
    loss_name, loss_params = strategy.loss
    loss_fn = LOSSES[loss_name].build(len(data.tags), **loss_params).to(device)
    return strategy, model, loss_fn, device, precision


def train_ner(
    config: dict[str, Any],
    data: NerData,
    settings: _loop.TrialSettings,
    report: _loop.Reporter | None = None,
) -> None:
    """Trains one tagging strategy for up to `settings.max_epochs`, reporting after every epoch.

    Without `report` it runs as a Ray Tune trial: reports go to Tune, and it resumes from the
    checkpoint Tune hands it, if any.
    """
    report, in_tune = _loop.start_trial(settings, report)
    strategy, model, loss_fn, device, precision = _build(config, data, settings)
    steps_per_epoch = math.ceil(len(data.train) / strategy.batch_size)
    optimization, rng, modules, first_epoch, param_count = _loop.prepare_training(
        strategy, model, loss_fn, settings, steps_per_epoch, precision, METRICS.get(settings.metric, settings.mode), in_tune,
    )
    for epoch in range(first_epoch, settings.max_epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_total, sentences = 0.0, 0
        for step, (_, words, chars, tags, mask) in enumerate(batches(data.train, strategy.batch_size, shuffle=True, rng=rng)):
            words, chars, tags, mask = words.to(device), chars.to(device), tags.to(device), mask.to(device)
            with precision.autocast():
                emissions = model.emissions(words, chars, mask)
            loss = tagging_loss(model, loss_fn, strategy.loss, emissions, tags, mask)
            objective = loss + optimization.penalty()
            _loop.check_finite(objective, epoch, step)
            optimization.step(objective)
            loss_total += loss.item() * len(words)
            sentences += len(words)
        train_seconds = time.perf_counter() - started

        dev = evaluate_split(model, data.validation, data, device, precision)
        optimization.end_epoch(dev[settings.metric])
        metrics = {
            **dev,
            "train_loss": loss_total / sentences,
            "epoch": epoch,
            "param_count": param_count,
            "train_seconds": train_seconds,
            "sentences_per_second": sentences / train_seconds,
            "lr": optimization.lr,
        }
        _loop.report_epoch(report, metrics, settings, modules, rng, epoch)


def evaluate_checkpoint(config: dict[str, Any], data: NerData, settings: _loop.TrialSettings, checkpoint_dir: str, split: str = "test") -> dict[str, float]:
    """Scores a trial's saved model on a split (the test split for the best trial)."""
    _, model, _, device, precision = _build(config, data, settings)
    state = _loop.load_state(checkpoint_dir)
    if state is None:
        raise FileNotFoundError(f"no model state in {checkpoint_dir}")
    model.load_state_dict(state["model"])
    return evaluate_split(model, getattr(data, split), data, device, precision)
