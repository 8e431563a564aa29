"""A tiny real NER search: local Ray, the BiLSTM(-CRF) trainable, SQLite in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.config import load_study_file
from search.engine import run_search
from tests.conftest import ner_study_yaml


def test_ner_search_records_dev_f1_curves_and_test_f1(ray_session, tmp_path: Path, conll_root: Path) -> None:
    db = tmp_path / "ner.db"
    study_file = tmp_path / "toyner.yaml"
    study_file.write_text(ner_study_yaml(f"sqlite:///{db}", trials=5, max_epochs=3, concurrency=2))

    summary = run_search(load_study_file(study_file), data_root=conll_root, storage_path=tmp_path / "ray_results", verbose=0, log=lambda _: None)

    study = optuna.load_study(study_name="toyner", storage=f"sqlite:///{db}")
    assert len(study.trials) == 5
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    heads = set()
    for trial in study.trials:
        heads.add(trial.params["head/name"])
        assert {"char_encoder/name", "head/name", "loss/name", "optimizer/name", "schedule/name"} <= set(trial.params)
        assert set(trial.intermediate_values) == set(range(1, trial.user_attrs["epochs_trained"] + 1))
        assert all(0.0 <= v <= 1.0 for v in trial.intermediate_values.values())
        metrics = trial.user_attrs["metrics"]
        assert {"f1", "precision", "recall", "f1_PER", "f1_LOC"} <= set(metrics)
    assert study.best_value > 0.8  # entities from fixed lists in templates: easy for a working tagger
    test = study.user_attrs["best_trial_test"]
    assert test["trial"] == study.best_trial.number and test["f1"] > 0.8
    assert summary.test_metrics["f1"] == test["f1"]
