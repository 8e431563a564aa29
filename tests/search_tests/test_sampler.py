"""BoundedTPESampler: plain TPE while the study is small; a bounded view of the trials after."""

from __future__ import annotations

import warnings

import optuna
import pytest

from search.sampler import BoundedTPESampler


def objective(trial: optuna.Trial) -> float:
    kind = trial.suggest_categorical("kind", ["a", "b"])
    x = trial.suggest_float(f"{kind}/x", -3.0, 3.0)
    return (x - 1.0) ** 2 if kind == "a" else 2.0 + x**2


def run(sampler: optuna.samplers.BaseSampler, trials: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(sampler=sampler)
        study.optimize(objective, n_trials=trials)
    return study


def test_same_as_tpe_below_the_bound() -> None:
    options = {"seed": 3, "multivariate": True, "group": True, "constant_liar": True}
    bounded = run(BoundedTPESampler(window=100, keep_best=25, **options), 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        plain = run(optuna.samplers.TPESampler(**options), 40)
    assert [t.params for t in bounded.trials] == [t.params for t in plain.trials]


def test_models_the_best_and_the_most_recent_trials() -> None:
    sampler = BoundedTPESampler(window=10, keep_best=25, seed=0)
    study = run(sampler, 60)
    trials = study.get_trials(deepcopy=False)
    seen = sampler._select(study, trials)
    best = sorted(trials, key=lambda t: t.value)[:25]
    assert len(seen) <= 35
    assert {t.number for t in trials[-10:]} <= {t.number for t in seen}
    assert {t.number for t in best} <= {t.number for t in seen}
    assert [t.number for t in seen] == sorted(t.number for t in seen)
    assert study.best_value < 0.5  # still optimizes


def test_refuses_a_good_set_smaller_than_tpe_uses() -> None:
    with pytest.raises(ValueError, match="keep_best"):
        BoundedTPESampler(keep_best=10)
