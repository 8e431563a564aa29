"""Short real searches (local Ray, the real trainable, SQLite in a temporary folder) that check, in
the Optuna DB, what a study file says about how its search starts: each sampler runs a search to
completion, the baseline is trial 0 and ASHA never stops it, enqueued configs run once, and a warm
start runs another study's best configs."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.config import apply_overrides, load_study_file
from search.engine import open_storage, prepare_study, run_search
from search.start import BASELINE_ATTR, QUEUED_ATTR, VARIATION_SOURCE
from tests.conftest import toy_study_yaml

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Nothing here depends on a choice: QMC's design needs a space without conditional parameters.
WITHOUT_CONDITIONS = """space:
  encoder: {choices: [textcnn], params: {textcnn: {filters: 32, layers: 1}}}
  addons: [layernorm]
  loss: cross_entropy
  regularizers: {search: [], always: [dropout]}
  optimizer: {choices: [adam], params: {adam: {lr: [0.003, 0.01]}}}
  schedule: constant
  batch_size: [16, 32]
  embedding_dim: 32
"""


def write_study(tmp_path: Path, fields: str, *, name: str = "toy", trials: int = 3, max_epochs: int = 2, concurrency: int = 1,
                space: str | None = None) -> Path:
    text = toy_study_yaml(f"sqlite:///{tmp_path / 'search.db'}", name=name, trials=trials, max_epochs=max_epochs, concurrency=concurrency)
    if space is not None:
        text = text[: text.index("space:")] + space
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace("\nspace:", f"\n{fields}\nspace:", 1))
    return path


def search(path: Path, tmp_path: Path, data_root: Path, **overrides: int) -> optuna.Study:
    config = apply_overrides(load_study_file(path), **overrides)
    run_search(config, data_root=data_root, storage_path=tmp_path / "ray_results", verbose=0, log=lambda _: None)
    return optuna.load_study(study_name=config.name, storage=config.storage)


def assert_baseline_first_and_trained_to_the_end(study: optuna.Study, max_epochs: int) -> None:
    baseline = study.trials[0]
    assert baseline.user_attrs[BASELINE_ATTR] is True
    assert baseline.state == TrialState.COMPLETE and baseline.user_attrs["epochs_trained"] == max_epochs
    assert set(baseline.intermediate_values) == set(range(1, max_epochs + 1))
    assert [t.number for t in study.trials if t.user_attrs.get(BASELINE_ATTR)] == [0]


# Each sampler's own record of having modelled the trials (GP and CMA-ES after one completed trial).
SAMPLERS = {
    "tpe": ("sampler: tpe", None, lambda study: True),
    "random": ("sampler: random", None, lambda study: True),
    "gp": ("sampler: {name: gp, n_startup_trials: 1}", None,
           lambda study: any(k.startswith("gp:relative_params") for t in study.trials for k in t.system_attrs)),
    "cmaes": ("sampler: {name: cmaes, n_startup_trials: 1}", None,
              lambda study: any(k.startswith("cma:generation") for t in study.trials for k in t.system_attrs)),
    "qmc": ("sampler: {name: qmc, qmc_type: halton}", WITHOUT_CONDITIONS,
            lambda study: any(k.startswith("qmc") for k in study._storage.get_study_system_attrs(study._study_id))),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_each_sampler_runs_a_search_to_completion(ray_session, tmp_path: Path, sentiment_root: Path, name: str) -> None:
    fields, space, modelled = SAMPLERS[name]
    study = search(write_study(tmp_path, fields, space=space), tmp_path, sentiment_root)
    trials = study.trials
    assert len(trials) == 3 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [
        (t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    assert study.user_attrs["sampler"]["name"] == name
    assert_baseline_first_and_trained_to_the_end(study, max_epochs=2)
    assert modelled(study), f"{name} left no trace of modelling the trials"


def test_baseline_is_never_stopped_enqueued_configs_are_and_neither_runs_twice(ray_session, tmp_path: Path, sentiment_root: Path) -> None:
    # Two strong trials first (queued before the search, as a user might), so that ASHA's first rung
    # is set when the hopeless baseline (SGD at lr 1e-4) and a hopeless enqueued config reach it.
    path = write_study(
        tmp_path, "baseline: {optimizer: {name: sgd, sgd: {lr: 0.0001}}}\nenqueue: [{optimizer: {name: sgd}}]",
        trials=5, max_epochs=3, concurrency=2,
    )
    config = load_study_file(path)
    queued = prepare_study(open_storage(config.storage), config)
    for _ in range(2):
        queued.enqueue_trial({"optimizer/name": "adam", "encoder/name": "textcnn"})

    study = search(path, tmp_path, sentiment_root)
    trials = study.trials
    baseline, hopeless = trials[2], trials[3]
    assert baseline.user_attrs[BASELINE_ATTR] is True and baseline.params["optimizer/name"] == "sgd"
    assert baseline.state == TrialState.COMPLETE and baseline.user_attrs["epochs_trained"] == 3, baseline.user_attrs
    assert max(baseline.intermediate_values.values()) < min(trials[0].intermediate_values[1], trials[1].intermediate_values[1])
    assert hopeless.user_attrs[QUEUED_ATTR] == "enqueue[0]" and hopeless.params["optimizer/name"] == "sgd"
    assert hopeless.state == TrialState.PRUNED and hopeless.user_attrs["epochs_trained"] == 1
    # The baseline was scored on test beside the best trial.
    assert study.user_attrs["baseline_test"]["trial"] == 2

    # The same study with a larger budget: nothing queued again.
    again = search(path, tmp_path, sentiment_root, trials=6)
    assert len(again.trials) == 6
    assert [t.number for t in again.trials if t.user_attrs.get(BASELINE_ATTR)] == [2]
    assert [t.number for t in again.trials if t.user_attrs.get(QUEUED_ATTR)] == [3]


def test_warm_start_runs_the_best_configs_of_another_study_first(ray_session, tmp_path: Path, sentiment_root: Path) -> None:
    earlier = search(write_study(tmp_path, "baseline: none", name="earlier", trials=3), tmp_path, sentiment_root)
    best = sorted((t for t in earlier.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value, reverse=True)[:2]
    assert best, "the earlier study completed no trial"
    later = search(write_study(tmp_path, "startup: plain\nwarm_start: {study: earlier, top: 2}", name="later", trials=1 + len(best) + 1), tmp_path, sentiment_root)
    trials = later.trials
    assert_baseline_first_and_trained_to_the_end(later, max_epochs=2)
    for trial, source in zip(trials[1:], best):
        assert trial.user_attrs[QUEUED_ATTR].startswith(f"warm_start: study 'earlier' trial {source.number} ")
        assert trial.params == source.params and trial.user_attrs["config"] == source.user_attrs["config"]
    assert QUEUED_ATTR not in trials[-1].user_attrs  # the rest is sampled


def test_a_new_study_runs_the_baseline_then_a_variation_of_it_then_tpe(ray_session, tmp_path: Path, sentiment_root: Path) -> None:
    # 8 trials: the baseline, 8 // 4 = 2 variations, 8 // 4 + 8 // 8 - 2 = 1 random draw, then TPE.
    study = search(write_study(tmp_path, "", trials=8, max_epochs=1, concurrency=2), tmp_path, sentiment_root)
    trials = study.trials
    assert len(trials) == 8 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [
        (t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    assert_baseline_first_and_trained_to_the_end(study, max_epochs=1)
    baseline = trials[0].params
    for variation in trials[1:3]:
        assert variation.user_attrs[QUEUED_ATTR].startswith(VARIATION_SOURCE)
        differs = {k for k in baseline.keys() | variation.params.keys() if baseline.get(k, "absent") != variation.params.get(k, "absent")}
        assert len({key.split("/")[0] for key in differs}) == 1, differs
    assert not any(QUEUED_ATTR in t.user_attrs for t in trials[3:])  # the rest is sampled
    assert study.user_attrs["sampler"] == {"name": "tpe", "n_startup_trials": 1 + 2 + 1}
