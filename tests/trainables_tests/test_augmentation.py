"""Data augmentation (spaces.augmentation): EDA and mixup for text classification, mention and
label-wise token replacement for NER; what the space refuses where a kind does not apply."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spaces import AUGMENTATION, SpaceError, Strategy, build_space
from spaces.augmentation import epoch_rng
from spaces.losses import LOSSES
from trainables.data import ConllSource, LocalSource, NerDataSpec, TextDataSpec, convert_scheme, load_ner, load_text_classification
from trainables.data.tag_augmentation import augment_positions, augmented_sentences, mention_spans, _TagSet
from trainables.models import build_text_classifier
from trainables.runner import TrialSettings
from trainables.task import TrialModel
from trainables import ner, reading_comprehension, text_classification

from tests.trainables_tests.test_ner import tagging_config
from tests.trainables_tests.test_text_classification import config as classification_config


@pytest.fixture()
def toy_text(sentiment_root: Path):
    spec = TextDataSpec(name="toy", local=LocalSource(format="csv", files={"train": "toy/train.csv", "validation": "toy/validation.csv"}), max_length=32)
    return load_text_classification(spec, sentiment_root, seed=0)


@pytest.fixture(params=["iob2", "bioes"])
def toy_tags(conll_root: Path, request):
    spec = NerDataSpec(name="toy", local=ConllSource(files={"train": "ner/train.conll", "validation": "ner/validation.conll"}), scheme=request.param)
    return load_ner(spec, conll_root, seed=0)


def _examples(split) -> list[list[int]]:
    return [split.tokens[start:end].tolist() for start, end in zip(split.offsets[:-1], split.offsets[1:])]


def _eda(probability: float, rate: float = 0.2):
    return AUGMENTATION["eda"].build(probability=probability, rate=rate)


# --- EDA ---------------------------------------------------------------------------------------


def test_eda_swaps_deletes_or_inserts_the_examples_own_tokens(toy_text) -> None:
    before = _examples(toy_text.train)
    augmented = text_classification.TASK.augmented(toy_text, [_eda(1.0)], epoch_rng(0, 1))
    after = _examples(augmented.train)
    assert len(after) == len(before) and (augmented.train.labels == toy_text.train.labels).all()
    kinds = Counter()
    for old, new in zip(before, after):
        old_counts, new_counts = Counter(old), Counter(new)
        if len(new) == len(old):
            assert new_counts == old_counts  # swap: the same tokens
            kinds["swap"] += 1
        elif len(new) < len(old):
            assert new_counts <= old_counts and len(new) >= 1  # deletion: some of them, never none
            kinds["delete"] += 1
        else:
            assert old_counts <= new_counts and set(new) == set(old)  # insertion: copies of its own tokens
            kinds["insert"] += 1
    assert set(kinds) == {"swap", "delete", "insert"} and sum(old != new for old, new in zip(before, after)) > len(before) / 2


def test_eda_is_reproducible_by_seed_and_epoch_and_off_at_probability_zero(toy_text) -> None:
    def epoch(seed: int, number: int, probability: float = 0.5) -> list[list[int]]:
        return _examples(text_classification.TASK.augmented(toy_text, [_eda(probability)], epoch_rng(seed, number)).train)

    assert epoch(0, 1) == epoch(0, 1)
    assert epoch(0, 2) != epoch(0, 1) and epoch(1, 1) != epoch(0, 1)
    assert epoch(0, 1, probability=0.0) == _examples(toy_text.train)
    changed = sum(a != b for a, b in zip(epoch(0, 1, probability=0.3), _examples(toy_text.train)))
    assert 0.15 * len(toy_text.train) < changed < 0.35 * len(toy_text.train)  # about 30%, less the swaps of equal tokens


# --- mixup -------------------------------------------------------------------------------------


def test_mixup_mixes_labels_with_the_coefficient_that_mixes_the_representations(toy_text) -> None:
    torch.manual_seed(0)
    strategy = Strategy.from_config(classification_config(addons={}, loss={"name": "cross_entropy"}))
    model = build_text_classifier(strategy, len(toy_text.vocab), len(toy_text.labels)).eval()  # no dropout: comparable passes
    trial = TrialModel(strategy, model, LOSSES["cross_entropy"].build(2))
    batch = next(text_classification.TASK.train_batches(toy_text, 16, np.random.default_rng(0)))
    mixup = AUGMENTATION["mixup"].build(probability=0.5, alpha=0.4)
    mixed = text_classification.TASK.mixed(batch, mixup, epoch_rng(0, 1))
    weight, partner = mixed.mix_weight, mixed.partner
    assert 0 < weight < 1 and (partner != torch.arange(16)).any()
    unmixed = partner == torch.arange(16)
    assert unmixed.any()  # probability 0.5: some examples are their own partner

    outputs = text_classification.TASK.forward(model, mixed)
    pooled = model.pool(batch.tokens, batch.mask)
    torch.testing.assert_close(outputs.logits, model.classify(weight * pooled + (1 - weight) * pooled[partner]))
    torch.testing.assert_close(outputs.logits[unmixed], model(batch.tokens, batch.mask)[unmixed])
    soft_labels = weight * F.one_hot(batch.labels, 2) + (1 - weight) * F.one_hot(batch.labels[partner], 2)
    expected = -(soft_labels * outputs.logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(text_classification.TASK.loss(trial, outputs, mixed), expected)


def test_mixup_at_probability_zero_leaves_the_batch_alone(toy_text) -> None:
    batch = next(text_classification.TASK.train_batches(toy_text, 16, np.random.default_rng(0)))
    assert text_classification.TASK.mixed(batch, AUGMENTATION["mixup"].build(probability=0.0, alpha=0.2), epoch_rng(0, 1)) is batch


def test_mixup_draws_are_reproducible_by_seed_and_epoch() -> None:
    mixup = AUGMENTATION["mixup"].build(probability=0.5, alpha=0.2)
    first, again, other = (mixup.draw(32, epoch_rng(0, e)) for e in (1, 1, 2))
    assert (first[0] == again[0]).all() and first[1] == again[1]
    assert not ((first[0] == other[0]).all() and first[1] == other[1])


# --- NER ---------------------------------------------------------------------------------------


def _sentences(split) -> list[tuple[list[int], list[int]]]:
    return [(split.words[s:e].tolist(), split.tags[s:e].tolist()) for s, e in zip(split.offsets[:-1], split.offsets[1:])]


def _chars(split, token: int) -> list[int]:
    return split.chars[split.char_offsets[token]:split.char_offsets[token + 1]].tolist()


def test_mention_replacement_keeps_every_tag_with_its_token_in_the_scheme(toy_tags) -> None:
    train, tags, scheme = toy_tags.train, toy_tags.tags, toy_tags.scheme
    replace = AUGMENTATION["mention_replacement"].build(probability=1.0, rate=1.0)
    positions, new_tags = augment_positions(train, tuple(tags), scheme, [replace], epoch_rng(0, 1))
    tag_set = _TagSet.of(tuple(tags), scheme)
    changed = 0
    for sentence, (where, tag_ids) in enumerate(zip(positions, new_tags)):
        names = [tags[t] for t in tag_ids]
        assert convert_scheme(names, scheme, scheme) == names  # well formed: B/I(/E/S) as the scheme writes them
        source_kinds = tag_set.kind_of[train.tags[where]]
        assert (tag_set.kind_of[tag_ids] == source_kinds).all()  # each token keeps its entity type (or O)
        original = train.tags[train.offsets[sentence]:train.offsets[sentence + 1]]
        assert len(mention_spans(tag_ids, np.array([0, len(tag_ids)]), tag_set)[0]) == len(mention_spans(original, np.array([0, len(original)]), tag_set)[0])
        changed += not np.array_equal(where, np.arange(train.offsets[sentence], train.offsets[sentence + 1]))
    assert changed > len(train) / 4
    rebuilt = augmented_sentences(train, tags, scheme, [replace], epoch_rng(0, 1))
    flat = np.concatenate(positions)
    assert (rebuilt.words == train.words[flat]).all() and (rebuilt.tags == np.concatenate(new_tags)).all()
    for token in range(0, len(flat), 7):
        assert rebuilt.chars[rebuilt.char_offsets[token]:rebuilt.char_offsets[token + 1]].tolist() == _chars(train, flat[token])


def test_token_replacement_draws_tokens_of_the_same_tag(toy_tags) -> None:
    train, tags, scheme = toy_tags.train, toy_tags.tags, toy_tags.scheme
    replace = AUGMENTATION["token_replacement"].build(probability=1.0, rate=0.5)
    positions, new_tags = augment_positions(train, tuple(tags), scheme, [replace], epoch_rng(0, 1))
    flat, flat_tags = np.concatenate(positions), np.concatenate(new_tags)
    assert (flat_tags == train.tags).all()  # the tags stay where they were
    assert (train.tags[flat] == flat_tags).all()  # and every token brought in carries the same tag
    assert 0.4 < (flat != np.arange(len(flat))).mean() < 0.6


def test_ner_augmentation_is_reproducible_by_seed_and_epoch_and_off_at_probability_zero(toy_tags) -> None:
    train, tags, scheme = toy_tags.train, toy_tags.tags, toy_tags.scheme
    both = [AUGMENTATION["mention_replacement"].build(probability=0.3, rate=0.5), AUGMENTATION["token_replacement"].build(probability=0.3, rate=0.2)]

    def epoch(seed: int, number: int, kinds=both) -> list:
        return _sentences(augmented_sentences(train, tags, scheme, kinds, epoch_rng(seed, number)))

    assert epoch(0, 1) == epoch(0, 1)
    assert epoch(0, 2) != epoch(0, 1) and epoch(1, 1) != epoch(0, 1)
    off = [AUGMENTATION["mention_replacement"].build(probability=0.0, rate=1.0), AUGMENTATION["token_replacement"].build(probability=0.0, rate=1.0)]
    identity = augmented_sentences(train, tags, scheme, off, epoch_rng(0, 1))
    for field in ("words", "offsets", "chars", "char_offsets", "tags"):
        assert np.array_equal(getattr(identity, field), getattr(train, field)), field


# --- in the space and the loop ----------------------------------------------------------------


@pytest.mark.parametrize(("task", "kinds", "offered"), [
    (ner.TASK, ["eda"], "tagged_tokens"),
    (ner.TASK, ["mixup"], "tagged_tokens"),
    (text_classification.TASK, ["mention_replacement"], "pooled, tokens"),
    (text_classification.TASK, ["token_replacement"], "pooled, tokens"),
    (reading_comprehension.TASK, ["eda"], "spans"),
    (reading_comprehension.TASK, ["token_replacement"], "spans"),
])
def test_the_space_refuses_a_kind_where_it_does_not_apply(task, kinds: list[str], offered: str) -> None:
    with pytest.raises(SpaceError, match=f"'{kinds[0]}' cannot be used by task {task.name} here: .* offers augmentation {offered}"):
        build_space({"augmentation": {"search": kinds}}, task.registries, offers=task.offers, task=task.name)


@pytest.mark.parametrize("task", [text_classification.TASK, ner.TASK])
def test_the_space_refuses_augmentation_beside_a_pretrained_encoder(task) -> None:
    kind = "eda" if task is text_classification.TASK else "mention_replacement"
    space = {"encoder": {"choices": ["bilstm", "transformer"], "params": {"transformer": {"model": "minilm"}}}, "augmentation": {"search": [kind]}}
    with pytest.raises(SpaceError, match="with encoder 'transformer'.*sub-words.*leave 'transformer' out of encoder"):
        build_space(space, task.registries, offers=task.offers, task=task.name)


def test_augmented_ner_training_reports_and_differs_from_plain(conll_root: Path) -> None:
    spec = NerDataSpec(name="toy", local=ConllSource(files={"train": "ner/train.conll", "validation": "ner/validation.conll"}), scheme="bioes")
    data = load_ner(spec, conll_root, seed=0)
    settings = TrialSettings(metric="f1", mode="max", max_epochs=2)
    augmentation = {"augmentation": {"mention_replacement": {"enabled": True, "probability": 0.5, "rate": 0.5},
                                     "token_replacement": {"enabled": True, "probability": 0.5, "rate": 0.2}}}
    runs = []
    for config in (tagging_config("crf"), tagging_config("crf") | augmentation):
        reports = []
        ner.train_ner(config, data, settings, lambda metrics, _: reports.append(metrics))
        runs.append(reports)
    assert [r["epoch"] for r in runs[1]] == [1, 2] and runs[1][-1]["train_loss"] > 0
    assert runs[1][-1]["train_loss"] != pytest.approx(runs[0][-1]["train_loss"], rel=1e-6)


def test_augmentation_is_named_in_the_summary_checked_by_search_train_and_unmapped_in_the_hf_export() -> None:
    from search.export import hf_training_arguments
    from spaces import ConfigError

    kinds = {"eda": {"probability": 0.2, "rate": 0.1}, "mixup": {"probability": 0.5, "alpha": 0.2}}
    config = classification_config(augmentation={name: {"enabled": True, **params} for name, params in kinds.items()})
    task = text_classification.TASK
    assert Strategy.from_config(config).summary().endswith(" / eda+mixup")
    Strategy.check(config, task.registries, task=task.name, offers=task.offers)  # what `search train` runs first
    assert hf_training_arguments({"config": config, "max_epochs": 2, "seed": 0})["unmapped"]["augmentation"] == kinds
    wrong = classification_config(augmentation={"token_replacement": {"enabled": True, "probability": 0.2, "rate": 0.1}})
    with pytest.raises(ConfigError, match="'token_replacement' cannot be used by task text_classification"):
        Strategy.check(wrong, task.registries, task=task.name, offers=task.offers)
