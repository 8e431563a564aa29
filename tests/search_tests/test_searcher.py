"""State recording of RecordingOptunaSearch, driven by a real local Ray Tune run."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from search.engine import make_sampler, open_storage
from search.searcher import RecordingOptunaSearch, TrialRecorder

# Ray workers cannot import this test module by name: ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

MAX_EPOCHS = 4
# Score per epoch for each kind of trial; "crash" raises in epoch 2; "nan" reports NaN throughout.
SCORES = {"good": [0.6, 0.7, 0.8, 0.9], "bad": [0.1, 0.1, 0.1, 0.1], "crash": [0.5], "nan": [math.nan] * 4}


def kind_space(trial) -> None:
    trial.suggest_categorical("kind", list(SCORES))


def describe_kind(config: dict) -> dict:
    return {"strategy": config["kind"]}


def scripted_trainable(config: dict) -> None:
    for epoch in range(1, MAX_EPOCHS + 1):
        if config["kind"] == "crash" and epoch == 2:
            raise ValueError("boom: scripted crash in epoch 2")
        tune.report({"score": SCORES[config["kind"]][epoch - 1], "epoch": epoch, "param_count": 7})


def run_scripted(tmp_path: Path, kinds: list[str]) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'states.db'}")
    study = optuna.create_study(study_name="states", storage=storage, direction="maximize")
    for kind in kinds:
        study.enqueue_trial({"kind": kind})
    searcher = RecordingOptunaSearch(
        space=kind_space, metric="score", mode="max", sampler=make_sampler(0),
        study_name="states", storage=storage, max_epochs=MAX_EPOCHS,
        describe=describe_kind,
    )
    tuner = tune.Tuner(
        scripted_trainable,
        tune_config=tune.TuneConfig(
            metric="score", mode="max", search_alg=searcher, num_samples=len(kinds),
            scheduler=ASHAScheduler(max_t=MAX_EPOCHS, grace_period=1, reduction_factor=2),
            max_concurrent_trials=1,  # one at a time: ASHA's decisions are then deterministic
        ),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "ray_results"), callbacks=[TrialRecorder(searcher)], verbose=0,
        ),
    )
    tuner.fit()
    searcher.close_unfinished()
    return optuna.load_study(study_name="states", storage=f"sqlite:///{tmp_path / 'states.db'}")


def test_states_are_faithful(ray_session, tmp_path: Path) -> None:
    kinds = ["good", "bad", "crash", "nan", "good"]
    study = run_scripted(tmp_path, kinds)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.params["kind"] for t in trials] == kinds
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states

    good, bad, crash, nan, good_again = trials
    # Ran all its epochs: COMPLETE, every epoch recorded, the last one included.
    assert good.state == TrialState.COMPLETE
    assert good.value == pytest.approx(0.9)
    assert good.intermediate_values == {1: 0.6, 2: 0.7, 3: pytest.approx(0.8), 4: pytest.approx(0.9)}
    assert good.user_attrs["epochs_trained"] == MAX_EPOCHS
    assert good.user_attrs["param_count"] == 7
    assert good.user_attrs["strategy"] == "good"
    assert good.user_attrs["config"] == {"kind": "good"}
    assert good.user_attrs["wall_time_s"] > 0

    # Stopped by ASHA at the first rung: PRUNED (OptunaSearch alone says COMPLETE), its value
    # being the last epoch it trained.
    assert bad.state == TrialState.PRUNED
    assert bad.intermediate_values == {1: 0.1}
    assert bad.user_attrs["epochs_trained"] == 1
    assert "ASHA" in bad.user_attrs["state_reason"]

    # Crashed: FAIL with the error text; the study went on.
    assert crash.state == TrialState.FAIL
    assert "ValueError: boom: scripted crash in epoch 2" in crash.user_attrs["error"]
    assert crash.intermediate_values == {1: 0.5}

    # Diverged (NaN metric): FAIL with the reason, and the study went on.
    assert nan.state == TrialState.FAIL
    assert "nan" in nan.user_attrs["state_reason"]

    assert good_again.state == TrialState.COMPLETE
    assert study.best_trial.number in (good.number, good_again.number)
