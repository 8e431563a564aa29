"""The tagger, its loss and the NER loop on their own (no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spaces import Strategy
from spaces.losses import IGNORE_INDEX, LOSSES
from trainables.data import ConllSource, NerDataSpec, load_ner
from trainables.optimization import Precision
from trainables.runner import TrialSettings
from trainables.ner import TASK, batches, evaluate_split, train_ner
from trainables.tagger import build_tagger
from trainables.task import TrialModel


@pytest.fixture()
def toy_ner(conll_root: Path):
    spec = NerDataSpec(
        name="toy",
        local=ConllSource(files={"train": "ner/train.conll", "validation": "ner/validation.conll", "test": "ner/test.conll"}),
        scheme="bioes",
    )
    return load_ner(spec, conll_root, seed=0)


def tagging_config(head: str = "crf", char_encoder: str = "cnn", loss: str = "cross_entropy", **loss_params) -> dict:
    char_params = {"cnn": {"char_dim": 16, "filters": 16}, "lstm": {"char_dim": 16, "hidden": 8}, "none": {}}[char_encoder]
    return {
        "char_encoder": {"name": char_encoder, char_encoder: char_params},
        "encoder": {"name": "bilstm", "bilstm": {"hidden": 24, "layers": 1}},
        "addons": {"mhsa": {"enabled": True, "heads": 2}, "layernorm": {"enabled": True}},
        "head": {"name": head},
        "loss": {"name": loss, loss: loss_params},
        "regularizers": {"dropout": {"enabled": True, "p": 0.1}},
        "optimizer": {"name": "adam", "adam": {"lr": 0.01}},
        "schedule": {"name": "constant"},
        "train": {"batch_size": 16},
        "model": {"embedding_dim": 24},
    }


def test_batches_pad_every_sentence_exactly(toy_ner) -> None:
    split = toy_ner.train
    seen = 0
    for batch in batches(split, 7, shuffle=True, rng=np.random.default_rng(0)):
        index, words, chars, tags, mask = batch.index, batch.words, batch.chars, batch.tags, batch.mask
        for row, sentence in enumerate(index):
            start, end = split.offsets[sentence], split.offsets[sentence + 1]
            length = end - start
            assert mask[row].sum() == length and mask[row, :length].all()
            assert words[row, :length].tolist() == split.words[start:end].tolist()
            assert (words[row, length:] == 0).all()
            assert tags[row, :length].tolist() == split.tags[start:end].tolist()
            assert (tags[row, length:] == IGNORE_INDEX).all()
            for position, token in enumerate(range(start, end)):
                spelled = split.chars[split.char_offsets[token]:split.char_offsets[token + 1]].tolist()
                assert chars[row, position, :len(spelled)].tolist() == spelled
                assert (chars[row, position, len(spelled):] == 0).all()
            assert (chars[row, length:] == 0).all()
        seen += len(index)
    assert seen == len(split)


@pytest.mark.parametrize("head", ["crf", "softmax"])
@pytest.mark.parametrize("char_encoder", ["cnn", "lstm", "none"])
@pytest.mark.parametrize(("loss", "params"), [("cross_entropy", {}), ("focal", {"gamma": 2.0}), ("ghm", {"bins": 10, "momentum": 0.5}), ("label_smoothing", {"epsilon": 0.1})])
def test_every_head_char_encoder_and_loss_trains(toy_ner, head: str, char_encoder: str, loss: str, params: dict) -> None:
    torch.manual_seed(0)
    strategy = Strategy.from_config(tagging_config(head, char_encoder, loss, **params))
    model = build_tagger(strategy, len(toy_ner.words), len(toy_ner.chars), toy_ner.tags, toy_ner.scheme)
    assert (model.crf is not None) == (head == "crf")
    trial = TrialModel(strategy, model, LOSSES[loss].build(len(toy_ner.tags), **params))
    batch = next(batches(toy_ner.train, 8, shuffle=False))
    words, mask = batch.words, batch.mask
    value = TASK.loss(trial, TASK.forward(model, batch), batch)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    decoded = model.decode(TASK.forward(model, batch), mask)
    assert decoded.shape == words.shape and (decoded[~mask] == 0).all()


class FixedPredictions(torch.nn.Module):
    """Stands in for a tagger: predicts given tag ids, to check the metrics alone."""

    def __init__(self, predictions: dict[tuple[int, ...], list[int]]) -> None:
        super().__init__()
        self.predictions = predictions

    def emissions(self, words: torch.Tensor, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return words.float().unsqueeze(-1)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rows = []
        for row, length in zip(emissions.squeeze(-1).long(), mask.sum(dim=1)):
            predicted = self.predictions[tuple(row[:length].tolist())]
            rows.append(predicted + [0] * (len(row) - len(predicted)))
        return torch.tensor(rows)


def test_entity_metrics_on_known_predictions(toy_ner) -> None:
    # Gold and predicted entities of the dev split, shifted so the scores are known:
    # every LOC is missed (predicted O); every PER is found exactly.
    tag_id = {tag: i for i, tag in enumerate(toy_ner.tags)}
    split = toy_ner.validation
    predictions, gold_per, gold_loc = {}, 0, 0
    for i in range(len(split)):
        words = split.words[split.offsets[i]:split.offsets[i + 1]].tolist()
        gold = [toy_ner.tags[t] for t in split.tags[split.offsets[i]:split.offsets[i + 1]]]
        gold_per += sum(tag[0] in "BS" and tag.endswith("PER") for tag in gold)
        gold_loc += sum(tag[0] in "BS" and tag.endswith("LOC") for tag in gold)
        predictions[tuple(words)] = [tag_id["O"] if tag.endswith("LOC") else tag_id[tag] for tag in gold]
    assert gold_per and gold_loc
    metrics = evaluate_split(FixedPredictions(predictions), split, toy_ner, torch.device("cpu"), Precision(torch.device("cpu"), False))
    assert metrics["precision"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(gold_per / (gold_per + gold_loc))
    assert metrics["f1_PER"] == pytest.approx(1.0) and metrics["f1_LOC"] == pytest.approx(0.0)
    recall = gold_per / (gold_per + gold_loc)
    assert metrics["f1"] == pytest.approx(2 * recall / (1 + recall))


@pytest.mark.parametrize("head", ["crf", "softmax"])
def test_training_learns_the_toy_entities(toy_ner, head: str) -> None:
    reports = []
    train_ner(tagging_config(head), toy_ner, TrialSettings(metric="f1", mode="max", max_epochs=4), lambda m, d: reports.append(m))
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4]
    assert {"f1", "precision", "recall", "f1_PER", "f1_LOC", "train_loss", "examples_per_second", "train_seconds", "epoch_seconds", "trial_seconds"} <= set(reports[-1])
    assert reports[-1]["f1"] > 0.9


def test_adversarial_training_weight_averaging_and_initialization_train_the_tagger(toy_ner) -> None:
    config = tagging_config("crf") | {
        "adversarial": {"name": "pgd", "pgd": {"epsilon": 0.5, "step_size": 0.2, "steps": 2}},
        "averaging": {"name": "ema", "ema": {"decay": 0.9}},
        "initialization": {"name": "orthogonal"},
    }
    reports = []
    train_ner(config, toy_ner, TrialSettings(metric="f1", mode="max", max_epochs=2), lambda m, d: reports.append(m))
    assert len(reports) == 2 and 0.0 <= reports[-1]["f1"] <= 1.0 and reports[-1]["train_loss"] > 0
