"""Strategy reads and writes every form of a trial's config: flat, nested, and the fixed `space:`."""

from __future__ import annotations

import optuna
import pytest

from spaces import (
    NER,
    READING_COMPREHENSION,
    TEXT_CLASSIFICATION,
    ConfigError,
    Strategy,
    build_space,
    choice_key,
    enabled_key,
    global_key,
    is_flat_key,
    param_key,
    suggest,
    unflatten,
    with_overrides,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

TASKS = {"text_classification": TEXT_CLASSIFICATION, "ner": NER, "reading_comprehension": READING_COMPREHENSION}
SPECS = {
    "defaults": None,
    "fixed and always": {
        "loss": {"choices": ["focal"], "params": {"focal": {"gamma": 2.0}}}, "optimizer": "adamw",
        "addons": {"search": ["mhsa"], "always": ["layernorm"]}, "regularizers": {"search": ["l1"], "always": ["dropout"]},
        "batch_size": [32, 64], "embedding_dim": 300,
    },
    "nothing toggled": {"addons": [], "regularizers": [], "schedule": "constant", "loss": "cross_entropy"},
}


def sampled(registries: dict, spec: dict | None, n: int = 8) -> list[dict]:
    space = build_space(spec, registries)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    flats = []
    for _ in range(n):
        trial = study.ask()
        flats.append(suggest(trial, space))
        study.tell(trial, 0.0)
    return flats


@pytest.mark.parametrize("spec", list(SPECS))
@pytest.mark.parametrize("task", list(TASKS))
def test_flat_nested_and_fixed_space_round_trip(task: str, spec: str) -> None:
    registries = TASKS[task]
    for flat in sampled(registries, SPECS[spec]):
        strategy = Strategy.from_flat(flat)
        assert list(strategy.to_flat().items()) == list(flat.items())  # same names, values and order
        assert strategy.to_config() == unflatten(flat)
        assert Strategy.from_config(strategy.to_config()) == strategy
        # The fixed space resamples to the same strategy, whatever the trial would have sampled.
        fixed = build_space(strategy.fixed_space(), registries)
        assert suggest(optuna.create_study().ask(), fixed) == flat
        Strategy.check(strategy.to_config(), registries, task=task)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_flat_name_is_one_the_naming_functions_give(task: str) -> None:
    registries = TASKS[task]
    names = {global_key("batch_size"), global_key("embedding_dim")}
    for family, registry in registries.items():
        names.add(choice_key(family))
        for component in registry.components.values():
            names.add(enabled_key(family, component.name))
            names.update(param_key(family, component.name, param) for param in component.params)
    for flat in sampled(registries, None):
        assert set(flat) <= names


@pytest.mark.parametrize("task", list(TASKS))
def test_dimensions_name_each_choice_family_each_toggle_and_the_globals(task: str) -> None:
    registries = TASKS[task]
    flat = sampled(registries, None, n=1)[0]
    dimensions = Strategy.from_flat(flat).dimensions()
    expected = {"batch_size", "embedding_dim"}
    for family, registry in registries.items():
        if registry.opt_in:
            continue  # not searched unless the study names it
        if registry.requires is not None and choice_key(family) not in flat:
            continue  # a family the sampled strategy does not use (fine-tuning without a transformer)
        if registry.kind == "choice":
            expected.add(family)
            assert dimensions[family] == flat[choice_key(family)]
        else:
            for name in registry.names():
                expected.add(f"{family}/{name}")
                assert dimensions[f"{family}/{name}"] == ("on" if flat[enabled_key(family, name)] else "off")
    assert set(dimensions) == expected
    assert dimensions["batch_size"] == str(flat[global_key("batch_size")])


def test_fixed_space_keeps_the_order_the_config_was_recorded_in() -> None:
    # Ray records sampled values first and fixed ones after, so a family can follow "train".
    config = {
        "encoder": {"name": "textcnn", "textcnn": {"filters": 64, "layers": 1, "kernels": "3,4,5"}},
        "train": {"batch_size": 32},
        "regularizers": {"dropout": {"p": 0.3, "enabled": True}, "l1": {"enabled": False}},
        "model": {"embedding_dim": 128},
    }
    strategy = Strategy.from_config(config)
    assert list(strategy.fixed_space()) == ["encoder", "batch_size", "regularizers", "embedding_dim"]
    assert strategy.fixed_space()["regularizers"] == {"search": [], "always": ["dropout"], "params": {"dropout": {"p": 0.3}}}
    assert strategy.to_config() == config and list(strategy.to_config()) == list(config)


def test_a_strategy_built_by_hand_writes_its_enabled_components() -> None:
    strategy = Strategy(
        choices={"loss": ("focal", {"gamma": 2.0}), "optimizer": ("adam", {"lr": 0.001})},
        toggles={"addons": {"layernorm": {}}},
        batch_size=32, embedding_dim=128,
    )
    assert strategy.to_config() == {
        "loss": {"name": "focal", "focal": {"gamma": 2.0}}, "optimizer": {"name": "adam", "adam": {"lr": 0.001}},
        "addons": {"layernorm": {"enabled": True}}, "train": {"batch_size": 32}, "model": {"embedding_dim": 128},
    }
    assert Strategy.from_config(strategy.to_config()) == strategy


def test_from_config_reads_globals_as_integers() -> None:
    config = {"loss": {"name": "cross_entropy"}, "train": {"batch_size": 32.0}, "model": {"embedding_dim": 128}}
    strategy = Strategy.from_config(config)
    assert (strategy.batch_size, strategy.embedding_dim) == (32, 128) and isinstance(strategy.batch_size, int)


def valid_config() -> dict:
    space = build_space({"loss": {"choices": ["focal"]}, "optimizer": "sgd"}, TEXT_CLASSIFICATION)
    return unflatten(suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask(), space))


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        ({"loss": {"name": "hinge"}}, "loss/name", "'hinge' is not a known loss"),
        ({"loss": "focal"}, "loss/name", "is not a resolved loss entry"),  # a mapping was expected, not a name
        ({"losses": {"name": "focal"}}, "losses", "unknown family for task text_classification"),
        ({"train": {}}, "train/batch_size", "missing; every config fixes it"),
        ({"train": {"batch_size": 0}}, "train/batch_size", "positive integer"),
        ({"loss": {"name": "focal", "focal": {"gama": 2.0}}}, "loss/focal/gama", "no parameter 'gama'"),
        ({"loss": {"name": "focal"}}, "loss/focal/gamma", "missing; the component this config uses needs it"),
        ({"loss": {"name": "focal", "focal": {"gamma": 2.0}, "ghm": {"bins": 10}}}, "loss/ghm/bins", "not used by this config"),
        ({"addons": {"mhsa": {"enabled": False, "heads": 2}, "layernorm": {"enabled": False}}}, "addons/mhsa/heads", "not used"),
    ],
)
def test_check_names_the_flat_key_at_fault(change: dict, key: str, fragment: str) -> None:
    config = {**valid_config(), **change}
    with pytest.raises(ConfigError) as error:
        Strategy.check(config, TEXT_CLASSIFICATION, task="text_classification")
    assert error.value.key == key
    assert error.value.where == "config." + key.replace("/", ".")
    assert fragment in error.value.message


def test_overrides_replace_values_and_drop_the_old_components_parameters() -> None:
    config = valid_config()
    same = with_overrides(config, {"optimizer/name": "sgd", "optimizer/sgd/lr": 0.5})
    assert same["optimizer"]["sgd"] == {**config["optimizer"]["sgd"], "lr": 0.5}
    other = with_overrides(config, {"optimizer/name": "adam", "optimizer/adam/lr": 0.003})
    assert other["optimizer"] == {"name": "adam", "adam": {"lr": 0.003}}
    assert {k: v for k, v in other.items() if k != "optimizer"} == {k: v for k, v in config.items() if k != "optimizer"}
    Strategy.check(other, TEXT_CLASSIFICATION)
    assert with_overrides({}, {"loss/name": "focal"}) == {"loss": {"name": "focal"}}


@pytest.mark.parametrize(("key", "ok"), [("loss/name", True), ("loss", True), ("", False), ("/loss", False), ("loss/", False),
                                         ("loss//name", False), (" loss/name", False)])
def test_is_flat_key(key: str, ok: bool) -> None:
    assert is_flat_key(key) is ok
