"""The transformer encoder and its fine-tuning families in the space (spaces.finetuning)."""

from __future__ import annotations

import optuna
import pytest

from search.tasks import get_task
from spaces import TEXT_CLASSIFICATION, ConfigError, SpaceError, Strategy, build_space, suggest
from spaces.finetuning import accumulation_steps, pretrained_model, pretrained_models

MIXED = {"encoder": {"choices": ["textcnn", "transformer"], "params": {"transformer": {"model": ["minilm", "bert-base-uncased"]}}}}


def sample(spec: dict, n: int = 30) -> list[dict]:
    space = build_space(spec, TEXT_CLASSIFICATION)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    flats = []
    for _ in range(n):
        trial = study.ask()
        flats.append(suggest(trial, space))
        study.tell(trial, 0.0)
    return flats


def test_the_transformer_is_searched_only_where_a_study_names_it() -> None:
    assert build_space({}, TEXT_CLASSIFICATION).families["encoder"].candidates == ("textcnn", "bilstm")
    assert "finetune" not in build_space({}, TEXT_CLASSIFICATION).families
    assert pretrained_models(build_space(MIXED, TEXT_CLASSIFICATION)) == ("minilm", "bert-base-uncased")
    assert pretrained_models(build_space({"encoder": "transformer"}, TEXT_CLASSIFICATION)) == ("minilm",)


def test_fine_tuning_is_sampled_only_in_trials_that_choose_the_transformer() -> None:
    flats = sample(MIXED)
    chosen = {flat["encoder/name"] for flat in flats}
    assert chosen == {"textcnn", "transformer"}
    for flat in flats:
        tuned = any(key.startswith(("finetune/", "pooling/")) for key in flat)
        assert tuned == (flat["encoder/name"] == "transformer")
        strategy = Strategy.from_flat(flat)
        assert pretrained_model(strategy) == flat.get("encoder/transformer/model")
        assert accumulation_steps(strategy) == flat.get(f"finetune/{flat.get('finetune/name')}/accumulation", 1)
        Strategy.check(strategy.to_config(), TEXT_CLASSIFICATION)  # what search train accepts


def test_fine_tuning_without_the_transformer_is_refused_naming_the_family() -> None:
    with pytest.raises(SpaceError) as error:
        build_space({"encoder": "textcnn", "finetune": "lora"}, TEXT_CLASSIFICATION)
    assert error.value.where == "space.finetune" and "only with encoder 'transformer'" in str(error.value)


def test_a_config_with_fine_tuning_for_a_textcnn_is_refused_and_a_transformer_config_needs_it() -> None:
    textcnn = {
        "encoder": {"name": "textcnn", "textcnn": {"filters": 64, "layers": 1}}, "finetune": {"name": "full"},
        "addons": {}, "loss": {"name": "cross_entropy"}, "regularizers": {}, "optimizer": {"name": "adam", "adam": {"lr": 0.001}},
        "schedule": {"name": "constant"}, "train": {"batch_size": 32}, "model": {"embedding_dim": 128},
    }
    with pytest.raises(ConfigError, match="only with encoder 'transformer'"):
        Strategy.check(textcnn, TEXT_CLASSIFICATION)
    transformer = {**textcnn, "encoder": {"name": "transformer", "transformer": {"model": "minilm"}}}
    del transformer["finetune"]
    with pytest.raises(ConfigError, match="missing"):
        Strategy.check(transformer, TEXT_CLASSIFICATION)


@pytest.mark.parametrize(("override", "fragment"), [
    ({"full": {"layer_decay": 1.5}}, "layer-wise learning-rate decay"),
    ({"lora": {"target_modules": "query,,value"}}, "LoRA target modules"),
    ({"full": {"freeze_layers": -1}}, "lower layers frozen"),
])
def test_fine_tuning_ranges_are_checked_against_their_limits(override: dict, fragment: str) -> None:
    spec = {"encoder": "transformer", "finetune": {"choices": list(override), "params": override}}
    with pytest.raises(SpaceError, match=fragment):
        build_space(spec, TEXT_CLASSIFICATION)


def test_ner_refuses_character_encoders_beside_the_transformer() -> None:
    adapter = get_task("ner")
    with pytest.raises(SpaceError, match="'cnn' cannot be used by task ner with encoder 'transformer'"):
        build_space({"encoder": "transformer", "char_encoder": ["cnn", "none"]}, adapter.registries, offers=adapter.offers, task="ner")
    space = build_space({"encoder": "transformer"}, adapter.registries, offers=adapter.offers, task="ner")
    assert space.families["char_encoder"].candidates == ("none",)  # omitted: only what works
    assert "finetune" in space.families


def test_reading_comprehension_refuses_loss_terms_and_character_encoders_beside_the_transformer() -> None:
    adapter = get_task("reading_comprehension")
    with pytest.raises(SpaceError, match="'infonce' cannot be used by task reading_comprehension with encoder 'transformer'"):
        build_space({"encoder": "transformer", "loss_terms": ["infonce"]}, adapter.registries, offers=adapter.offers, task=adapter.name)
    space = build_space({"encoder": "transformer"}, adapter.registries, offers=adapter.offers, task=adapter.name)
    assert space.families["loss_terms"].candidates == () and space.families["char_encoder"].candidates == ("none",)
    # a from-scratch BiDAF study is untouched
    bidaf = build_space({"encoder": "bilstm"}, adapter.registries, offers=adapter.offers, task=adapter.name)
    assert bidaf.families["loss_terms"].candidates == ("infonce",) and "finetune" not in bidaf.families
