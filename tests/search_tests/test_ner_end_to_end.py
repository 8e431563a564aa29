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


def test_a_search_with_augmentation_records_each_kind_in_the_db_and_the_strategy_table(ray_session, tmp_path: Path, conll_root: Path) -> None:
    from search.report import strategy_table

    db = tmp_path / "ner_augmented.db"
    study_file = tmp_path / "toyner_augmented.yaml"
    space = "  augmentation: {search: [mention_replacement, token_replacement]}\n"
    study_file.write_text(ner_study_yaml(f"sqlite:///{db}", trials=5, max_epochs=2, concurrency=2, name="toyner_augmented") + space)

    run_search(load_study_file(study_file), data_root=conll_root, storage_path=tmp_path / "ray_results", verbose=0, log=lambda _: None)

    study = optuna.load_study(study_name="toyner_augmented", storage=f"sqlite:///{db}")
    trials = study.trials
    assert len(trials) == 5 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert trials[0].user_attrs["baseline"] and not any(trials[0].params[f"augmentation/{k}/enabled"] for k in ("mention_replacement", "token_replacement"))
    rows = {(r.dimension, r.choice): r for r in strategy_table(study)}
    turned_on = set()
    for kind in ("mention_replacement", "token_replacement"):
        for on in (True, False):
            with_it = [t for t in trials if t.params[f"augmentation/{kind}/enabled"] is on]
            if with_it:
                assert rows[(f"augmentation/{kind}", "on" if on else "off")].trials == len(with_it)
        for trial in trials:
            entry = trial.user_attrs["config"]["augmentation"][kind]
            if entry["enabled"]:
                turned_on.add(kind)
                assert 0.05 <= entry["probability"] <= 0.5 and kind in trial.user_attrs["strategy"]
    assert turned_on  # the sampler tried augmentation; those trials trained and were scored
    assert all(0.0 <= v <= 1.0 for t in trials for v in t.intermediate_values.values())
