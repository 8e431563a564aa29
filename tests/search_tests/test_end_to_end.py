"""One real search: local Ray, the real trainable, an SQLite file in a temporary folder."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search.cli import main
from search.config import load_study_file
from search.engine import open_storage, prepare_study, run_search
from search.report import strategy_table
from spaces import suggest, unflatten
from tests.conftest import toy_study_yaml
from tests.search_tests.test_report import dashboard_study


def test_search_lands_every_trial_in_the_optuna_db(ray_session, tmp_path: Path, sentiment_root: Path) -> None:
    db = tmp_path / "search.db"
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(f"sqlite:///{db}", trials=6, max_epochs=3, concurrency=2))
    # Two Adam trials first, then two hopeless ones (SGD at lr 1e-4) that reach ASHA's first rung
    # after them and must be stopped there; the rest of each config and the last two trials come
    # from the sampler. Left to the sampler alone, whether a weak trial arrives after a strong one
    # depends on the draw, and the PRUNED check below would too.
    config = load_study_file(study_file)
    queued = prepare_study(open_storage(config.storage), config)
    for optimizer in ("adam", "adam", "sgd", "sgd"):
        queued.enqueue_trial({"optimizer/name": optimizer})

    summary = run_search(config, data_root=sentiment_root, storage_path=tmp_path / "ray_results", verbose=0, log=lambda _: None)
    assert summary.trials_run == 6

    # Read back with Optuna alone, as a user would.
    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{db}")
    trials = study.trials
    assert len(trials) == 6
    states = {t.state for t in trials}
    assert states <= {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}
    assert TrialState.COMPLETE in states
    assert TrialState.PRUNED in states
    hopeless = [t for t in trials if t.number in (2, 3)]
    assert [t.params["optimizer/name"] for t in hopeless] == ["sgd", "sgd"]
    assert all(t.state == TrialState.PRUNED and t.user_attrs["epochs_trained"] == 1 for t in hopeless), [
        (t.number, t.state.name, t.intermediate_values) for t in trials]
    for trial in trials:
        assert trial.state != TrialState.FAIL, trial.user_attrs.get("error")
        assert trial.intermediate_values, f"trial {trial.number} has no learning curve"
        assert set(trial.intermediate_values) == set(range(1, trial.user_attrs["epochs_trained"] + 1))
        attrs = trial.user_attrs
        assert attrs["param_count"] > 0
        assert attrs["wall_time_s"] > 0
        assert attrs["config"]["encoder"]["name"] == trial.params["encoder/name"]
        assert attrs["strategy"].startswith(trial.params["encoder/name"])
        for family in ("encoder/name", "addons/layernorm/enabled", "loss/name", "regularizers/weight_decay/enabled", "optimizer/name", "schedule/name"):
            assert family in trial.params
        if trial.state == TrialState.COMPLETE:
            assert attrs["epochs_trained"] == 3
            assert trial.value == trial.intermediate_values[3]
    # Concurrency 2 is reached: some trial was proposed before another had finished (with Ray's
    # one-pending-trial default for searchers they would run strictly one after the other).
    overlaps = [
        (a.number, b.number) for a in trials for b in trials
        if a.number < b.number and b.datetime_start < a.datetime_complete
    ]
    assert overlaps, "no two trials ran at the same time"
    assert study.best_value > 0.9  # the toy task is easy for a working trainer
    assert study.user_attrs["metric"] == "accuracy"
    # The best trial's saved model, scored on the test split after the search.
    test = study.user_attrs["best_trial_test"]
    assert test["trial"] == study.best_trial.number
    assert test["accuracy"] > 0.9 and summary.test_metrics == {k: v for k, v in test.items() if k != "trial"}
    assert summary.best_value == study.best_value

    # `search best --as-study` writes a study that fixes every value of the best config.
    retrain_file = tmp_path / "retrain.yaml"
    assert main(["best", "toy", "--storage", f"sqlite:///{db}", "--as-study", str(retrain_file)]) == 0
    retrain = load_study_file(retrain_file)
    assert retrain.budget.trials == 1 and retrain.name == f"toy-trial{study.best_trial.number}"
    resampled = suggest(optuna.create_study().ask(), retrain.space)
    assert unflatten(resampled) == study.best_trial.user_attrs["config"]

    # `search export` then `search train` reproduces the best trial's dev metric (same seed, one thread).
    exported = tmp_path / "best.yaml"
    assert main(["export", "toy", "--storage", f"sqlite:///{db}", "--format", "yaml", "--out", str(exported)]) == 0
    trained = tmp_path / "trained"
    assert main(["train", str(exported), "--out", str(trained), "--data-root", str(sentiment_root)]) == 0
    metrics = json.loads((trained / "metrics.json").read_text())
    assert abs(metrics["dev"]["accuracy"] - study.best_value) <= 0.02
    assert len(metrics["epochs"]) == 3 and metrics["test"]["accuracy"] > 0.9
    assert (trained / "model.safetensors").exists() and not (trained / "model.pt").exists()
    assert json.loads((trained / "vocab.json").read_text())["labels"] == ["neg", "pos"]

    # `search export --format cli` then `search train <those flags>` trains the same config: same metrics.
    command = tmp_path / "best.sh"
    assert main(["export", "toy", "--storage", f"sqlite:///{db}", "--format", "cli", "--out", str(command)]) == 0
    comment, _, flags = command.read_text().partition("\n")
    assert comment.startswith(f"# study 'toy', trial {study.best_trial.number}")
    argv = shlex.split(flags.replace("\\\n", " "))
    assert argv[:2] == ["search", "train"] and "--set" in argv
    from_flags = tmp_path / "trained-from-flags"
    assert main([*argv[1:], "--out", str(from_flags), "--data-root", str(sentiment_root)]) == 0
    flag_metrics = json.loads((from_flags / "metrics.json").read_text())
    assert flag_metrics["dev"]["accuracy"] == pytest.approx(metrics["dev"]["accuracy"], abs=1e-9)
    assert flag_metrics["test"] == pytest.approx(metrics["test"])
    assert yaml.safe_load((from_flags / "config.yaml").read_text())["config"] == study.best_trial.user_attrs["config"]

    # The strategy table's counts agree with the parameters Optuna recorded for each trial.
    rows = {(r.dimension, r.choice): r for r in strategy_table(study)}
    for param in ("encoder/name", "loss/name", "optimizer/name", "schedule/name", "addons/layernorm/enabled"):
        dimension = param.removesuffix("/name").removesuffix("/enabled")
        for choice in {t.params[param] for t in trials}:
            label = ("on" if choice else "off") if param.endswith("/enabled") else choice
            with_choice = [t for t in trials if t.params[param] == choice]
            row = rows[(dimension, label)]
            assert (row.trials, row.completed, row.pruned) == (
                len(with_choice), sum(t.state == TrialState.COMPLETE for t in with_choice), sum(t.state == TrialState.PRUNED for t in with_choice))

    # optuna-dashboard's API shows every trial with its readable strategy, epochs and how it ended.
    _, detail = dashboard_study(f"sqlite:///{db}", "toy", tmp_path)
    assert len(detail["trials"]) == len(trials)
    for shown, trial in zip(detail["trials"], trials):
        attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
        assert attrs["strategy"] == trial.user_attrs["strategy"] and " / " in attrs["strategy"]
        assert attrs["epochs_trained"] == str(trial.user_attrs["epochs_trained"])
        assert attrs["state_reason"].startswith("completed" if trial.state == TrialState.COMPLETE else "stopped by ASHA")

    hf_file = tmp_path / "hf.json"
    assert main(["export", "toy", "--storage", f"sqlite:///{db}", "--format", "hf", "--out", str(hf_file)]) == 0
    hf = json.loads(hf_file.read_text())
    assert {"learning_rate", "num_train_epochs", "per_device_train_batch_size", "seed", "weight_decay", "optim", "lr_scheduler_type"} <= set(hf["fields"])
    best_config = study.best_trial.user_attrs["config"]
    assert hf["fields"]["learning_rate"] == best_config["optimizer"][best_config["optimizer"]["name"]]["lr"]
    assert hf["unmapped"]["encoder"]["name"] == best_config["encoder"]["name"]  # never silently dropped
    if best_config["loss"]["name"] == "focal":
        assert hf["unmapped"]["loss"]["name"] == "focal"

    # Running the same study again with the budget met adds nothing and keeps every trial.
    before = [(t.number, t.state, t.value) for t in study.trials]
    again = run_search(load_study_file(study_file), data_root=sentiment_root, storage_path=tmp_path / "ray_results", verbose=0, log=lambda _: None)
    assert again.trials_run == 0
    after = optuna.load_study(study_name="toy", storage=f"sqlite:///{db}")
    assert [(t.number, t.state, t.value) for t in after.trials] == before
