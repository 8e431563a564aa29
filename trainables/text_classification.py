"""The text-classification trainable: one sampled strategy, trained and reported once per epoch.

It knows nothing about the searcher: it reads its config, trains, and calls `report` with one flat
dict per epoch (plus a checkpoint). Ray Tune passes the config; the encoded data arrives once
through the object store (`tune.with_parameters`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from spaces._space import Strategy
from spaces.losses import LOSSES
from trainables import _loop
from trainables.data import EncodedSplit, TextClassificationData
from trainables.models import build_text_classifier

METRICS = {"accuracy": "max", "macro_f1": "max", "loss": "min"}


def batches(split: EncodedSplit, batch_size: int, *, shuffle: bool, rng: np.random.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Padded batches (tokens, mask, labels), each padded only to its own longest example."""
    order = rng.permutation(len(split)) if shuffle else np.argsort(split.lengths(), kind="stable")
    lengths = split.lengths()
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        width = int(lengths[index].max())
        tokens = np.zeros((len(index), width), dtype=np.int64)
        for row, i in enumerate(index):
            ids = split.tokens[split.offsets[i]:split.offsets[i + 1]]
            tokens[row, :len(ids)] = ids
        tokens_t = torch.from_numpy(tokens)
        yield tokens_t, tokens_t != 0, torch.from_numpy(split.labels[index])


def macro_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes in gold or predictions (as scikit-learn's
    `f1_score(average="macro", zero_division=0)`); numpy only, so a trial's worker never imports
    scikit-learn and SciPy (about 60 MiB and a second per worker)."""
    classes = np.union1d(gold, predicted)
    scores = []
    for label in classes:
        true_positive = np.sum((predicted == label) & (gold == label))
        denominator = np.sum(predicted == label) + np.sum(gold == label)
        scores.append(2 * true_positive / denominator if denominator else 0.0)
    return float(np.mean(scores)) if scores else 0.0


@torch.no_grad()
def evaluate(model: nn.Module, split: EncodedSplit, device: torch.device, precision: _loop.Precision) -> dict[str, float]:
    model.eval()
    predictions, golds, loss_sum = [], [], 0.0
    for tokens, mask, labels in batches(split, 256, shuffle=False):
        with precision.autocast():
            logits = model(tokens.to(device), mask.to(device))
        loss_sum += nn.functional.cross_entropy(logits.float(), labels.to(device), reduction="sum").item()
        predictions.append(logits.argmax(dim=-1).cpu().numpy())
        golds.append(labels.numpy())
    predicted, gold = np.concatenate(predictions), np.concatenate(golds)
    return {
        "accuracy": float((predicted == gold).mean()),
        "macro_f1": macro_f1(gold, predicted),
        "loss": loss_sum / len(gold),
    }


def _build(config: dict[str, Any], data: TextClassificationData, settings: _loop.TrialSettings) -> tuple[Strategy, nn.Module, nn.Module, torch.device, _loop.Precision]:
    strategy = Strategy.from_config(config)
    device = _loop.pick_device()
    precision = _loop.Precision(device, settings.mixed_precision)
    model = build_text_classifier(strategy, len(data.vocab), len(data.labels)).to(device)
    loss_name, loss_params = strategy.loss
    loss_fn = LOSSES[loss_name].build(len(data.labels), **loss_params).to(device)
    return strategy, model, loss_fn, device, precision


def train_text_classification(
    config: dict[str, Any],
    data: TextClassificationData,
    settings: _loop.TrialSettings,
    report: _loop.Reporter | None = None,
) -> None:
    """Trains one strategy for up to `settings.max_epochs`, reporting after every epoch.

    Without `report` it runs as a Ray Tune trial: reports go to Tune, and it resumes from the
    checkpoint Tune hands it, if any.
    """
    report, in_tune = _loop.start_trial(settings, report)
    strategy, model, loss_fn, device, precision = _build(config, data, settings)
    steps_per_epoch = math.ceil(len(data.train) / strategy.batch_size)
    optimization, rng, modules, first_epoch, param_count = _loop.prepare_training(
        strategy, model, loss_fn, settings, steps_per_epoch, precision, METRICS.get(settings.metric, settings.mode), in_tune,
    )
    trial_seconds = 0.0  # training + dev evaluation since this (re)start: the trial's own work
    for epoch in range(first_epoch, settings.max_epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_total, examples = 0.0, 0
        for step, (tokens, mask, labels) in enumerate(batches(data.train, strategy.batch_size, shuffle=True, rng=rng)):
            tokens, mask, labels = tokens.to(device), mask.to(device), labels.to(device)
            with precision.autocast():
                logits = model(tokens, mask)
            loss = loss_fn(logits, labels)
            objective = loss + optimization.penalty()
            _loop.check_finite(objective, epoch, step)
            optimization.step(objective)
            loss_total += loss.item() * len(labels)
            examples += len(labels)
        train_seconds = time.perf_counter() - started

        dev = evaluate(model, data.validation, device, precision)
        optimization.end_epoch(dev[settings.metric])
        epoch_seconds = time.perf_counter() - started
        trial_seconds += epoch_seconds
        metrics = {
            **dev,
            "train_loss": loss_total / examples,
            "epoch": epoch,
            "param_count": param_count,
            "train_seconds": train_seconds,
            "epoch_seconds": epoch_seconds,
            "trial_seconds": trial_seconds,
            "lr": optimization.lr,
        }
        _loop.report_epoch(report, metrics, settings, modules, rng, epoch)


def evaluate_checkpoint(config: dict[str, Any], data: TextClassificationData, settings: _loop.TrialSettings, checkpoint_dir: str, split: str = "test") -> dict[str, float]:
    """Scores a trial's saved model on a split (the test split for the best trial)."""
    _, model, _, device, precision = _build(config, data, settings)
    state = _loop.load_state(checkpoint_dir)
    if state is None:
        raise FileNotFoundError(f"no model state in {checkpoint_dir}")
    model.load_state_dict(state["model"])
    return evaluate(model, getattr(data, split), device, precision)
