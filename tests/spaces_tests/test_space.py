from __future__ import annotations

import optuna
import pytest
import torch

from spaces import (
    ADDONS,
    ENCODERS,
    REGULARIZERS,
    TEXT_CLASSIFICATION,
    Float,
    Int,
    SpaceError,
    Strategy,
    build_space,
    categorical_choices,
    suggest,
    unflatten,
)
from tests.spaces_tests._helpers import lowest
from trainables.models import build_text_classifier

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample(spec: dict | None, n: int = 1, seed: int = 0) -> list[tuple[dict, dict]]:
    space = build_space(spec, TEXT_CLASSIFICATION)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        config = suggest(trial, space)
        out.append((config, dict(trial.params)))
        study.tell(trial, 0.0)
    return out


def test_suggest_with_plain_optuna_trial_covers_every_family() -> None:
    config, params = sample(None)[0]
    for family in ("encoder/name", "loss/name", "optimizer/name", "schedule/name"):
        assert family in params
    assert any(k.startswith("addons/") for k in params)
    assert any(k.startswith("regularizers/") for k in params)
    # every sampled value is in the flat config the trial gets
    assert all(config[k] == v for k, v in params.items())


def test_branch_parameters_carry_their_branch_name() -> None:
    seen = set()
    for config, params in sample(None, n=60, seed=1):
        loss = params["loss/name"]
        seen.add(loss)
        loss_params = [k for k in params if k.startswith("loss/") and k != "loss/name"]
        assert all(k.startswith(f"loss/{loss}/") for k in loss_params)
        if loss == "focal":
            assert "loss/focal/gamma" in params
        opt = params["optimizer/name"]
        assert f"optimizer/{opt}/lr" in params
        for name in ADDONS.names():
            on = params[f"addons/{name}/enabled"]
            assert any(k.startswith(f"addons/{name}/") and not k.endswith("/enabled") for k in params) == (on and bool(ADDONS[name].params))
    assert seen == {"cross_entropy", "focal", "ghm", "label_smoothing"}


def test_flat_config_unflattens_without_collisions() -> None:
    for config, _ in sample(None, n=30, seed=2):
        nested = unflatten(config)
        strategy = Strategy.from_config(nested)
        assert strategy.encoder[0] in ENCODERS.names()
        assert set(strategy.regularizers) <= set(REGULARIZERS.names())


def test_fixed_choice_is_still_a_recorded_param_and_fixed_value_is_constant() -> None:
    spec = {"loss": {"choices": ["focal"], "params": {"focal": {"gamma": 2.0}}}, "optimizer": "adamw", "batch_size": 32}
    for config, params in sample(spec, n=5):
        assert params["loss/name"] == "focal"
        assert config["loss/focal/gamma"] == 2.0
        assert "loss/focal/gamma" not in params  # fixed: not sampled
        assert params["optimizer/name"] == "adamw"
        assert config["train/batch_size"] == 32


def test_overridden_range_is_respected() -> None:
    spec = {"optimizer": {"choices": ["sgd"], "params": {"sgd": {"lr": [0.01, 0.02], "nesterov": False}}}}
    for config, _ in sample(spec, n=20):
        assert 0.01 <= config["optimizer/sgd/lr"] <= 0.02
        assert config["optimizer/sgd/nesterov"] is False


def test_toggle_family_search_always_and_off() -> None:
    spec = {"addons": {"search": ["mhsa"], "always": ["layernorm"]}, "regularizers": []}
    for config, params in sample(spec, n=10):
        assert config["addons/layernorm/enabled"] is True and "addons/layernorm/enabled" not in params
        assert "addons/mhsa/enabled" in params
        assert not any(config[f"regularizers/{name}/enabled"] for name in REGULARIZERS.names())


@pytest.mark.parametrize(
    ("spec", "where", "fragment"),
    [
        ({"loss": ["cross_entropy", "hinge"]}, "space.loss", "'hinge' is not a known loss; accepted: cross_entropy, focal, ghm, label_smoothing"),
        ({"optimizer": {"choices": ["adam"], "params": {"adam": {"lr": [-0.1, 0.1]}}}}, "space.optimizer.params.adam.lr", "must be > 0"),
        ({"optimizer": {"choices": ["adam"], "params": {"adam": {"momentum": 0.9}}}}, "space.optimizer.params.adam.momentum", "its parameters: lr"),
        ({"loss": {"choices": ["focal"], "params": {"ghm": {"bins": 10}}}}, "space.loss.params.ghm", "does not use"),
        ({"addons": {"search": ["mhsa"], "always": ["mhsa"]}}, "space.addons", "both"),
        ({"schedules": ["cosine"]}, "space.schedules", "unknown space entry"),
        ({"batch_size": [32, 0]}, "space.batch_size", "positive integer"),
        ({"loss": {"choices": ["focal"], "params": {"focal": {"gamma": [3, 1]}}}}, "space.loss.params.focal.gamma", "greater than high"),
    ],
)
def test_bad_space_is_refused_with_field_and_accepted_values(spec: dict, where: str, fragment: str) -> None:
    with pytest.raises(SpaceError) as error:
        build_space(spec, TEXT_CLASSIFICATION)
    assert error.value.where == where
    assert fragment in str(error.value)


@pytest.mark.parametrize("encoder", [name for name in ENCODERS.names() if ENCODERS[name].build is not None])  # transformer: tests/trainables_tests/test_pretrained.py
@pytest.mark.parametrize("addons", [(), ("mhsa",), ("layernorm",), ("mhsa", "layernorm")])
def test_every_encoder_and_addon_builds_and_trains(encoder: str, addons: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    low = {name: lowest(p) for name, p in ENCODERS[encoder].params.items()}
    config = {
        "encoder": {"name": encoder, encoder: low},
        "addons": {name: {"enabled": name in addons, **({"heads": 2} if name == "mhsa" else {})} for name in ADDONS.names()},
        "loss": {"name": "cross_entropy"},
        "regularizers": {"dropout": {"enabled": True, "p": 0.1}, "embedding_dropout": {"enabled": True, "p": 0.1}},
        "optimizer": {"name": "adam", "adam": {"lr": 1e-3}},
        "schedule": {"name": "constant"},
        "train": {"batch_size": 4},
        "model": {"embedding_dim": 16},
    }
    model = build_text_classifier(Strategy.from_config(config), vocab_size=50, num_classes=3)
    tokens = torch.randint(1, 50, (4, 9))
    tokens[0, 5:] = 0  # padding
    mask = tokens != 0
    logits = model(tokens, mask)
    assert logits.shape == (4, 3)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # padding must not change the prediction for the padded example
    model.eval()
    longer = torch.cat([tokens, torch.zeros(4, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(tokens, mask), model(longer, longer != 0), atol=1e-5, rtol=1e-4)


def test_categorical_choices_predicts_every_categorical_suggest_asks_for() -> None:
    spec = {"optimizer": {"choices": ["sgd", "adam"], "params": {"sgd": {"nesterov": [True, False]}}}, "addons": {"search": ["mhsa"], "always": ["layernorm"]}}
    space = build_space(spec, TEXT_CLASSIFICATION)
    predicted = categorical_choices(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    asked = {}
    for _ in range(40):
        trial = study.ask()
        suggest(trial, space)
        for name, distribution in trial.distributions.items():
            if isinstance(distribution, optuna.distributions.CategoricalDistribution):
                asked[name] = tuple(distribution.choices)
        study.tell(trial, 0.0)
    assert asked and all(predicted[name] == choices for name, choices in asked.items())
    assert predicted["optimizer/sgd/nesterov"] == (True, False)


@pytest.mark.parametrize("family", list(TEXT_CLASSIFICATION))
def test_every_declared_range_respects_its_limits_and_is_documented(family: str) -> None:
    for component in TEXT_CLASSIFICATION[family].components.values():
        for key, param in component.params.items():
            where = f"{family}.{component.name}.{key}"
            assert param.doc, f"{where} has no doc (used in error messages)"
            if isinstance(param, (Float, Int)):
                assert param.limits.admits(param.low) and param.limits.admits(param.high), where
