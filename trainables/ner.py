"""Named entity recognition as a task of the trial runner: batches of sentences with their
characters, a BiLSTM tagger with a softmax or CRF head, seqeval's entity-level scores on a split.

A strategy with the `transformer` encoder trains on its model's sub-words (`data_for`): word tags
sit at each word's first sub-token, the heads work over words, and predictions go back to every
word of the sentence (`trainables.data.subword_tags`).

Metrics are seqeval's entity-level precision, recall and F1 (micro, conlleval's default mode),
plus F1 per entity type.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from seqeval.metrics import classification_report
from torch import nn

from spaces import NER, Offer
from spaces import Strategy
from spaces.augmentation import TAGGED_TOKENS
from spaces.encoders import SUBWORDS, WORDS
from spaces.losses import CLASSES, GOLD_LOG_PROB, IGNORE_INDEX, GoldLogProb
from spaces.regularizers import LOOP, MODEL
from trainables.data import EncodedSentences, NerData, NerDataSpec, load_ner
from trainables.data.tag_augmentation import augmented_sentences
from trainables.data.subword_tags import SubwordNerData, SubwordSentences, tag_batches, word_predictions
from trainables.optimization import Precision
from trainables.tagger import Tagger, build_tagger
from trainables.task import TRAINING_EXTRAS_OFFERS, Batch, Task, TrialModel, build_loss, published_baseline


@dataclass
class TagBatch(Batch):
    index: np.ndarray  # sentence indices in the split
    words: torch.Tensor  # [B, T]
    chars: torch.Tensor  # [B, T, L]
    tags: torch.Tensor  # [B, T], IGNORE_INDEX at padding
    mask: torch.Tensor  # [B, T]

    def __len__(self) -> int:
        return len(self.words)


def batches(split: EncodedSentences, batch_size: int, *, shuffle: bool, rng: np.random.Generator | None = None) -> Iterator[TagBatch]:
    """Padded batches, built with array indexing only (no Python loop over tokens): padding words
    are 0, padding characters 0, padding tags IGNORE_INDEX."""
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

        mask = torch.from_numpy(np.arange(width)[None, :] < sentence_lengths[:, None])
        yield TagBatch(index, torch.from_numpy(words), torch.from_numpy(chars), torch.from_numpy(tags), mask)


@dataclass
class SubwordTagBatch(Batch):
    """Sentences in a pretrained model's sub-words; `tags` and `mask` are per word (the words that
    have a sub-token, in order), as `TagBatch`'s, so the loss reads both batches alike."""

    index: np.ndarray
    ids: torch.Tensor  # [B, S] sub-token ids
    subword_mask: torch.Tensor  # [B, S]
    positions: torch.Tensor  # [B, W] each word's first sub-token
    tags: torch.Tensor  # [B, W], IGNORE_INDEX at padding
    mask: torch.Tensor  # [B, W]

    def __len__(self) -> int:
        return len(self.ids)


def subword_batches(split: SubwordSentences, pad: int, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[SubwordTagBatch]:
    for arrays in tag_batches(split, pad, batch_size, rng):
        yield SubwordTagBatch(arrays.index, torch.from_numpy(arrays.ids), torch.from_numpy(arrays.subword_mask),
                              torch.from_numpy(arrays.positions), torch.from_numpy(arrays.tags), torch.from_numpy(arrays.mask))


def entity_scores(gold_sequences: list[list[str]], predicted_sequences: list[list[str]]) -> dict[str, float]:
    """Entity-level precision, recall, F1 (micro) and F1 per type, with seqeval."""
    report = classification_report(gold_sequences, predicted_sequences, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    metrics = {"f1": float(micro["f1-score"]), "precision": float(micro["precision"]), "recall": float(micro["recall"])}
    for entity_type, scores in report.items():
        if not entity_type.endswith(" avg"):
            metrics[f"f1_{entity_type}"] = float(scores["f1-score"])
    return metrics


@torch.no_grad()
def evaluate_subword_split(model: nn.Module, split: SubwordSentences, data: SubwordNerData, device: torch.device, precision: Precision) -> dict[str, float]:
    """`entity_scores` over every word of every sentence: words the model did not see are "O"."""
    model.eval()
    gold_sequences: list[list[str]] = []
    predicted_sequences: list[list[str]] = []
    for batch in subword_batches(split, data.model.pad_id, 64):
        index = batch.index
        batch = batch.to(device)
        with precision.autocast():
            emissions = model(batch.ids, batch.subword_mask, batch.positions)
        predicted = model.decode(emissions.float(), batch.mask).cpu().numpy()
        for row, sentence in enumerate(index):
            first, gold = split.sentence(int(sentence))
            gold_sequences.append([data.tags[t] for t in gold])
            predicted_sequences.append([data.tags[t] for t in word_predictions(predicted[row], first, data.outside)])
    return entity_scores(gold_sequences, predicted_sequences)


@torch.no_grad()
def evaluate_split(model: Tagger, split: EncodedSentences, data: NerData, device: torch.device, precision: Precision) -> dict[str, float]:
    """Entity-level precision, recall, F1 (micro) and F1 per type, with seqeval."""
    model.eval()
    gold_sequences: list[list[str]] = []
    predicted_sequences: list[list[str]] = []
    for batch in batches(split, 128, shuffle=False):
        gold = batch.tags.numpy()
        batch = batch.to(device)
        with precision.autocast():
            emissions = model.emissions(batch.words, batch.chars, batch.mask)
        predicted = model.decode(emissions.float(), batch.mask).cpu().numpy()
        lengths = batch.mask.sum(dim=1).cpu().numpy()
        for row, length in enumerate(lengths):
            gold_sequences.append([data.tags[t] for t in gold[row, :length]])
            predicted_sequences.append([data.tags[t] for t in predicted[row, :length]])
    return entity_scores(gold_sequences, predicted_sequences)


def crf_log_probs(model: Tagger, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> GoldLogProb:
    """A batch under the CRF head as a loss sees it: each sentence's log p(gold tags), scaled to
    per token, and for label smoothing the uniform-target cross-entropy of the emissions per token."""
    assert model.crf is not None

    def uniform_nll() -> torch.Tensor:
        return -(torch.log_softmax(emissions.float(), dim=-1).mean(dim=-1) * mask).sum() / mask.sum()

    return GoldLogProb(model.crf.log_likelihood(emissions, tags, mask), uniform_nll, per_unit=mask.sum() / mask.shape[0])


class NamedEntityRecognition(Task):
    name = "ner"
    registries = NER
    metrics = {"f1": "max", "precision": "max", "recall": "max"}
    offers = {
        "loss": (
            Offer(frozenset({CLASSES}), when=("head", "softmax"), why="per-token logits over the tags"),
            Offer(frozenset({GOLD_LOG_PROB}), when=("head", "crf"), why="each sentence's log p(gold tags) under the CRF"),
        ),
        "regularizers": (Offer(frozenset({LOOP, MODEL})),),
        **TRAINING_EXTRAS_OFFERS,
        "augmentation": (
            Offer(frozenset({TAGGED_TOKENS}), why="word ids with their tags"),
            Offer(frozenset({SUBWORDS}), when=("encoder", "transformer"),
                  why="a pretrained model's sub-words: a replaced word would need tokenizing again, its tag sits at its first sub-token"),
        ),
        "encoder": (Offer(frozenset({WORDS, SUBWORDS}), why="word and character features, and a pretrained model's own sub-words"),),
        # A pretrained encoder reads its own sub-words: no character features beside them.
        "char_encoder": (Offer(frozenset({SUBWORDS}), when=("encoder", "transformer"), why="a pretrained encoder's sub-words only"),),
    }
    data_spec = NerDataSpec
    # The research's BiLSTM-CRF (embedding 100, hidden 256, 1 layer, dropout 0.5; see
    # `published_baseline` for what it does not give). Its character encoder is not given either:
    # the character LSTM of Lample et al. (2016), the BiLSTM-CRF paper (25-dim characters, 25 per direction).
    baselines = {
        "bilstm_crf": published_baseline(
            char_encoder=("lstm", {"char_dim": 25, "hidden": 25}), encoder=("bilstm", {"hidden": 256, "layers": 1}),
            head=("crf", {}), embedding_dim=100, dropout=0.5,
        ),
    }

    def load_data(self, spec: NerDataSpec, data_root: str | None, seed: int) -> NerData:
        return load_ner(spec, data_root, seed)


    def build(self, strategy: Strategy, data: NerData | SubwordNerData) -> TrialModel:
        if isinstance(data, SubwordNerData):
            from trainables.pretrained import build_token_tagger

            model = build_token_tagger(strategy, data.model, data.tags, data.scheme)
        else:
            model = build_tagger(strategy, len(data.words), len(data.chars), data.tags, data.scheme)
        return TrialModel(strategy, model, build_loss(strategy, len(data.tags)))

    def train_batches(self, data: NerData | SubwordNerData, batch_size: int, rng: np.random.Generator) -> Iterator[TagBatch | SubwordTagBatch]:
        if isinstance(data, SubwordNerData):
            return subword_batches(data.train, data.model.pad_id, batch_size, rng)
        return batches(data.train, batch_size, shuffle=True, rng=rng)

    def augmented(self, data: NerData, augmenters: list[Any], rng: np.random.Generator) -> NerData:
        return replace(data, train=augmented_sentences(data.train, data.tags, data.scheme, augmenters, rng))

    def forward(self, model: nn.Module, batch: TagBatch | SubwordTagBatch) -> torch.Tensor:
        if isinstance(batch, SubwordTagBatch):
            return model(batch.ids, batch.subword_mask, batch.positions)
        return model.emissions(batch.words, batch.chars, batch.mask)

    def loss(self, trial: TrialModel, outputs: torch.Tensor, batch: TagBatch) -> torch.Tensor:
        """Per token under either head, so learning rates compare: the softmax head's token-level
        loss over real tokens, or the loss family applied per sentence under the CRF."""
        model: Tagger = trial.model  # type: ignore[assignment]
        if model.crf is None:
            return trial.loss(outputs.reshape(-1, outputs.shape[-1]), batch.tags.reshape(-1))
        return trial.loss.from_gold(crf_log_probs(model, outputs, batch.tags, batch.mask))

    def evaluate(self, trial: TrialModel, data: NerData | SubwordNerData, split: str, precision: Any) -> dict[str, float]:
        if isinstance(data, SubwordNerData):
            return evaluate_subword_split(trial.model, getattr(data, split), data, trial.device, precision)
        return evaluate_split(trial.model, getattr(data, split), data, trial.device, precision)  # type: ignore[arg-type]


    def save_pretrained(self, config: dict[str, Any], data: NerData, checkpoint_dir: str, out_dir: str) -> str | None:
        encoded = self.data_for(config, data)
        if not isinstance(encoded, SubwordNerData):
            return None
        from trainables.pretrained_folder import save_folder
        from trainables.runner import load_state

        strategy = Strategy.from_config(config)
        model = self.build(strategy, encoded).model
        model.load_state_dict(load_state(checkpoint_dir)["model"])
        ours = {"addons": dict(strategy.addons)} if model.own_head else {}
        if model.crf is not None:
            ours["head"] = f"crf over words (tags {encoded.scheme}; decode with its transitions, not per-token argmax)"
        ours["words"] = "each word is scored at its first sub-token"
        return save_folder(model, encoded.model, out_dir, "AutoModelForTokenClassification", ours)


TASK = NamedEntityRecognition()
# The trial function Ray runs for this task: (config, data, settings, report=None) -> None.
train_ner = TASK.trainable
