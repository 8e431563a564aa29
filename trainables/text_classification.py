"""Text classification as a task of the trial runner: batches of sentences, a TextCNN or BiLSTM
classifier or a fine-tuned pretrained encoder, accuracy and macro-F1 on a split.

A strategy with the `transformer` encoder trains on its model's sub-words (`data_for`), batched
with dynamic padding and grouped by length; every other strategy on the word ids."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from spaces import TEXT_CLASSIFICATION, Offer
from spaces import Strategy
from spaces.augmentation import EDA, POOLED, TOKENS, Mixup
from spaces.consistency import POOLED as CONSISTENCY_POOLED, TWO_PASSES
from spaces.encoders import SUBWORDS, WORDS
from spaces.losses import CLASSES
from spaces.regularizers import LOOP, MODEL
from spaces.distillation import TEACHER_OUTPUTS
from spaces.finetuning import pretrained_model
from trainables.data import EncodedSplit, TextClassificationData, TextDataSpec, load_text_classification
from trainables.data.common import DataError, column
from trainables.data.section import Section
from trainables.data.subwords import SubwordClassificationData, SubwordSplit, encode_classification, fingerprint, length_grouped_batches, pad_rows, sorted_batches
from trainables.data.text import encode_with_vocabulary, load_splits
from trainables.teacher import VOCAB_FILE, Teacher
from trainables.models import TextClassifier, build_text_classifier
from trainables.optimization import Precision
from trainables.task import TRAINING_EXTRAS_OFFERS, Batch, Task, TrialModel, build_loss, published_baseline


@dataclass
class TextBatch(Batch):
    tokens: torch.Tensor  # [B, T], 0 = padding
    mask: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B]
    index: torch.Tensor  # [B], each example's position in its split
    teacher: torch.Tensor | None = None  # [B, C]: the teacher's logits (training batches of a study with a teacher)
    # Mixup: each example's partner [B] and the weight of its own pooled representation and label.
    partner: torch.Tensor | None = None
    mix_weight: float = 1.0

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TextOutputs:
    logits: torch.Tensor  # [B, C]
    pooled: torch.Tensor | None  # [B, D] before mixing; None for a pretrained model's own head


def _teacher_rows(teacher: np.ndarray | None, index: np.ndarray) -> torch.Tensor | None:
    return None if teacher is None else torch.from_numpy(teacher[index])


def augmented_split(split: EncodedSplit, eda: EDA, rng: np.random.Generator) -> EncodedSplit:
    """`split` with the examples EDA draws rewritten; labels unchanged."""
    pieces = np.split(split.tokens, split.offsets[1:-1])
    for i in np.flatnonzero(eda.chosen(len(split), rng)):
        pieces[i] = eda.augment(pieces[i], rng)
    lengths = np.array([len(piece) for piece in pieces], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(split.offsets.dtype)
    return EncodedSplit(np.concatenate(pieces).astype(split.tokens.dtype), offsets, split.labels)


def subword_batches(
    split: SubwordSplit, pad: int, batch_size: int, rng: np.random.Generator | None = None, teacher: np.ndarray | None = None,
) -> Iterator[TextBatch]:
    """Sub-word batches padded to their own longest example: grouped by length and shuffled with
    `rng`, else (evaluation) in order of length; with `teacher`'s rows of their examples."""
    lengths = split.lengths()
    order = length_grouped_batches(lengths, batch_size, rng) if rng is not None else sorted_batches(lengths, batch_size)
    for index in order:
        ids, mask = pad_rows(split.ids, split.offsets, index, pad)
        yield TextBatch(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(split.labels[index]), torch.from_numpy(index), _teacher_rows(teacher, index))


def batches(
    split: EncodedSplit, batch_size: int, *, shuffle: bool, rng: np.random.Generator | None = None, teacher: np.ndarray | None = None,
) -> Iterator[TextBatch]:
    """Padded batches, each padded only to its own longest example; with `teacher`'s rows of their examples."""
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
        yield TextBatch(tokens_t, tokens_t != 0, torch.from_numpy(split.labels[index]), torch.from_numpy(index), _teacher_rows(teacher, index))


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
def evaluate(model: nn.Module, split: EncodedSplit, device: torch.device, precision: Precision, evaluation_batches: Iterator[TextBatch] | None = None) -> dict[str, float]:
    model.eval()
    predictions, golds, loss_sum = [], [], 0.0
    for batch in evaluation_batches or batches(split, 256, shuffle=False):
        batch = batch.to(device)
        with precision.autocast():
            logits = model(batch.tokens, batch.mask)
        loss_sum += nn.functional.cross_entropy(logits.float(), batch.labels, reduction="sum").item()
        predictions.append(logits.argmax(dim=-1).cpu().numpy())
        golds.append(batch.labels.cpu().numpy())
    predicted, gold = np.concatenate(predictions), np.concatenate(golds)
    return {
        "accuracy": float((predicted == gold).mean()),
        "macro_f1": macro_f1(gold, predicted),
        "loss": loss_sum / len(gold),
    }


class TextClassification(Task):
    name = "text_classification"
    registries = TEXT_CLASSIFICATION
    metrics = {"accuracy": "max", "macro_f1": "max", "loss": "min"}
    offers = {
        "encoder": (Offer(frozenset({WORDS, SUBWORDS}), why="word ids, and a pretrained model's own sub-words"),),
        "loss": (Offer(frozenset({CLASSES}), why="logits over the labels"),),
        "regularizers": (Offer(frozenset({LOOP, MODEL})),),
        **TRAINING_EXTRAS_OFFERS,
        "augmentation": (
            Offer(frozenset({TOKENS, POOLED}), why="word ids, and the pooled sentence representation"),
            Offer(frozenset({SUBWORDS}), when=("encoder", "transformer"),
                  why="a pretrained model's sub-words (swapping or inserting them splits words) and its own pooling head"),
        ),
        "consistency": (
            Offer(frozenset({TWO_PASSES, CONSISTENCY_POOLED}), why="logits over the labels, and the pooled sentence representation"),
            Offer(frozenset({TWO_PASSES}), when=("encoder", "transformer"), why="logits over the labels; a pretrained model's own head pools inside its Hugging Face class"),
        ),
        "distillation": (Offer(frozenset({TEACHER_OUTPUTS}), why="the study teacher's logits over the labels"),),
    }
    data_spec = TextDataSpec
    # The research's Table 8 (see `published_baseline` for what it does not give).
    baselines = {
        "textcnn": published_baseline(encoder=("textcnn", {"filters": 128, "layers": 1}), embedding_dim=300, dropout=0.5),
        "bilstm": published_baseline(encoder=("bilstm", {"hidden": 128, "layers": 2}), embedding_dim=300, dropout=0.5),
    }

    def load_data(self, spec: TextDataSpec, data_root: str | None, seed: int) -> TextClassificationData:
        return load_text_classification(spec, data_root, seed)


    def build(self, strategy: Strategy, data: TextClassificationData | SubwordClassificationData) -> TrialModel:
        if isinstance(data, SubwordClassificationData):
            from trainables.pretrained import build_sequence_classifier

            model = build_sequence_classifier(strategy, data.model, data.labels)
        else:
            model = build_text_classifier(strategy, len(data.vocab), len(data.labels))
        return TrialModel(strategy, model, build_loss(strategy, len(data.labels)))

    def train_batches(self, data: TextClassificationData | SubwordClassificationData, batch_size: int, rng: np.random.Generator) -> Iterator[TextBatch]:
        if isinstance(data, SubwordClassificationData):
            return subword_batches(data.train, data.model.pad_id, batch_size, rng, teacher=data.teacher)
        return batches(data.train, batch_size, shuffle=True, rng=rng, teacher=data.teacher)

    def forward(self, model: nn.Module, batch: TextBatch) -> TextOutputs:
        if not isinstance(model, TextClassifier):
            return TextOutputs(model(batch.tokens, batch.mask), None)
        pooled = model.pool(batch.tokens, batch.mask)
        mixed = pooled if batch.partner is None else Mixup.mix(pooled, batch.partner, batch.mix_weight)
        return TextOutputs(model.classify(mixed), pooled)

    def loss(self, trial: TrialModel, outputs: TextOutputs, batch: TextBatch) -> torch.Tensor:
        if batch.partner is None:
            return trial.loss(outputs.logits, batch.labels)
        return Mixup.loss(trial.loss, outputs.logits, batch.labels, batch.partner, batch.mix_weight)

    def augmented(self, data: TextClassificationData, augmenters: list[Any], rng: np.random.Generator) -> TextClassificationData:
        train = data.train
        for eda in augmenters:
            train = augmented_split(train, eda, rng)
        return replace(data, train=train)

    def mixed(self, batch: TextBatch, mixup: Mixup, rng: np.random.Generator) -> TextBatch:
        drawn = mixup.draw(len(batch), rng)
        if drawn is None:
            return batch
        partner, weight = drawn
        return replace(batch, partner=torch.from_numpy(partner), mix_weight=weight)

    def save_pretrained(self, config: dict[str, Any], data: TextClassificationData, checkpoint_dir: str, out_dir: str) -> str | None:
        encoded = self.data_for(config, data)
        if not isinstance(encoded, SubwordClassificationData):
            return None
        from trainables.pretrained_folder import save_folder
        from trainables.runner import load_state

        strategy = Strategy.from_config(config)
        model = self.build(strategy, encoded).model
        model.load_state_dict(load_state(checkpoint_dir)["model"])
        ours = {"pooling": model.pooling, "addons": dict(strategy.addons)} if model.own_head else {}
        return save_folder(model, encoded.model, out_dir, "AutoModelForSequenceClassification", ours)

    def evaluate(self, trial: TrialModel, data: TextClassificationData | SubwordClassificationData, split: str, precision: Any) -> dict[str, float]:
        encoded = getattr(data, split)
        in_batches = subword_batches(encoded, data.model.pad_id, 64) if isinstance(data, SubwordClassificationData) else None
        return evaluate(trial.model, encoded, trial.device, precision, in_batches)


    def class_logits(self, outputs: TextOutputs) -> torch.Tensor:
        return outputs.logits

    def pooled(self, outputs: TextOutputs, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        assert outputs.pooled is not None, "the space offers pooled representations only from the catalogue's classifiers"
        return outputs.pooled, batch.labels

    def teacher_examples_key(self, spec: TextDataSpec, data_root: str | None, seed: int) -> str:
        train = load_splits(spec, data_root, seed)[0]["train"]
        return fingerprint(column(train, "text"), column(train, "label"))

    @torch.no_grad()
    def teacher_outputs(self, teacher: Teacher, data: TextClassificationData, spec: TextDataSpec, data_root: str | None, seed: int) -> np.ndarray:
        """The teacher's logits on every training sentence, in order: the sentences encoded as the
        teacher reads them (its vocabulary, or its pretrained model's sub-words, with its own
        lengths), its model rebuilt from its config and loaded with its weights."""
        from trainables.runner import load_state

        vocabularies = json.loads((teacher.folder / VOCAB_FILE).read_text(encoding="utf-8"))
        if vocabularies.get("labels") != data.labels:
            raise DataError(f"teacher {teacher.folder}: its labels {vocabularies.get('labels')} are not this study's {data.labels}; give a teacher trained on the same labels")
        teacher_spec = TextDataSpec.from_section(Section(teacher.document["data"], "data."))
        train = load_splits(spec, data_root, seed)[0]["train"]
        config = dict(teacher.document["config"])
        model_name = pretrained_model(config)
        if model_name is not None:
            encoded, _ = encode_classification({"train": train, "validation": train}, data.labels, model_name, data_root, teacher_spec.subword_max_length)
            in_batches = subword_batches(encoded.train, encoded.model.pad_id, 64)
        else:
            encoded = encode_with_vocabulary(train, teacher_spec, vocabularies["vocab"], data.labels)
            in_batches = batches(encoded.train, 256, shuffle=False)
        model = self.build(Strategy.from_config(config), encoded).model
        model.load_state_dict(load_state(str(teacher.folder))["model"])
        model.eval()
        logits = np.zeros((len(train), len(data.labels)), dtype=np.float32)
        for batch in in_batches:
            logits[batch.index.numpy()] = model(batch.tokens, batch.mask).float().numpy()
        return logits


TASK = TextClassification()
# The trial function Ray runs for this task: (config, data, settings, report=None) -> None.
train_text_classification = TASK.trainable
