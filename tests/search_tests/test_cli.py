"""The command line as a user meets it: exit codes, messages, and a database left intact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.conftest import REPO_ROOT, toy_study_yaml

optuna.logging.set_verbosity(optuna.logging.WARNING)


def search(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def seed_database(db: Path) -> list[tuple]:
    """A study as the engine leaves it, to check that failed runs do not touch it."""
    study = optuna.create_study(study_name="keep", storage=f"sqlite:///{db}", direction="maximize")
    study.set_user_attr("metric", "accuracy")
    study.set_user_attr("task", "text_classification")
    for number, value in enumerate([0.71, 0.83, 0.77]):
        trial = study.ask({"loss/name": optuna.distributions.CategoricalDistribution(["focal", "ghm"])})
        trial.set_user_attr("config", {"loss": {"name": trial.params["loss/name"]}, "trial": number})
        trial.set_user_attr("strategy", f"textcnn / {trial.params['loss/name']}")
        trial.report(value - 0.1, 1)
        study.tell(trial, value)
    pruned = study.ask()
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    return snapshot(db)


def snapshot(db: Path) -> list[tuple]:
    storage = f"sqlite:///{db}"
    rows = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        rows += [(summary.study_name, t.number, t.state.name, t.value, t.params, t.user_attrs, t.intermediate_values) for t in study.trials]
    return rows


@pytest.fixture()
def seeded(tmp_path: Path) -> tuple[Path, list[tuple]]:
    db = tmp_path / "shared.db"
    return db, seed_database(db)


BAD_STUDIES = {
    "unknown loss": (("loss: [cross_entropy, focal]", "loss: [cross_entropy, hinge]"), ["space.loss", "'hinge'", "accepted: cross_entropy, focal, ghm, label_smoothing"]),
    "negative lr bound": (("adam: {lr: [0.003, 0.01]}", "adam: {lr: [-0.5, 0.01]}"), ["space.optimizer.params.adam.lr", "-0.5", "> 0"]),
    "missing data file": (("toy/train.csv", "toy/missing_train.csv"), ["missing_train.csv", "--data-root", "SEARCH_DATA_ROOT"]),
    "zero time budget": (("  max_epochs: 3\n", "  max_epochs: 3\n  time_budget_s: 0\n"), ["budget.time_budget_s", "0 is out of range", "> 0"]),
}


@pytest.mark.parametrize("case", list(BAD_STUDIES))
def test_bad_input_is_refused_without_traceback_and_db_untouched(case: str, tmp_path: Path, seeded, sentiment_root: Path) -> None:
    db, before = seeded
    (old, new), expected = BAD_STUDIES[case]
    study_file = tmp_path / "bad.yaml"
    study_file.write_text(toy_study_yaml(f"sqlite:///{db}").replace(old, new, 1))

    result = search("run", str(study_file), "--data-root", str(sentiment_root), cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("search: error: ")
    for fragment in expected:
        assert fragment in result.stderr
    assert snapshot(db) == before


def test_a_bad_time_budget_flag_is_refused(tmp_path: Path, seeded, sentiment_root: Path) -> None:
    db, before = seeded
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(f"sqlite:///{db}"))
    result = search("run", str(study_file), "--data-root", str(sentiment_root), "--time-budget", "-5", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("search: error: ") and "Traceback" not in result.stderr
    assert "--time-budget" in result.stderr and "-5 is not accepted" in result.stderr and "> 0" in result.stderr
    assert snapshot(db) == before


def test_existing_study_with_other_direction_is_refused(tmp_path: Path, seeded, sentiment_root: Path) -> None:
    db, before = seeded
    study_file = tmp_path / "loss.yaml"
    study_file.write_text(toy_study_yaml(f"sqlite:///{db}", name="keep").replace("metric: accuracy\ndirection: maximize", "metric: loss\ndirection: minimize"))
    result = search("run", str(study_file), "--data-root", str(sentiment_root), cwd=tmp_path)
    assert result.returncode == 2
    assert "already exists" in result.stderr and "maximize" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(db) == before


def test_status_and_best(tmp_path: Path, seeded) -> None:
    db, _ = seeded
    status = search("status", "--storage", f"sqlite:///{db}", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    header, row = status.stdout.splitlines()[:2]
    assert header.split()[:7] == ["study", "task", "trials", "complete", "pruned", "fail", "running"]
    assert row.split()[:7] == ["keep", "text_classification", "4", "3", "1", "0", "0"]
    assert "accuracy 0.8300" in row

    best = search("best", "keep", "--storage", f"sqlite:///{db}", cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    assert "best trial 1, accuracy = 0.8300" in best.stdout
    assert "trial: 1" in best.stdout  # the full config comes from the trial's user attributes


def test_best_of_unknown_study_and_status_of_missing_db(tmp_path: Path, seeded) -> None:
    db, _ = seeded
    best = search("best", "nope", "--storage", f"sqlite:///{db}", cwd=tmp_path)
    assert best.returncode == 2 and "no study named 'nope'" in best.stderr and "keep" in best.stderr
    missing = tmp_path / "absent.db"
    status = search("status", "--storage", f"sqlite:///{missing}", cwd=tmp_path)
    assert status.returncode == 2 and "no database at" in status.stderr
    assert not missing.exists()


def test_reopening_a_study_with_changed_choices_is_refused(tmp_path: Path, seeded, sentiment_root: Path) -> None:
    # "keep" searched loss/name over [focal, ghm]; this file asks for [cross_entropy, focal].
    db, before = seeded
    study_file = tmp_path / "changed.yaml"
    study_file.write_text(toy_study_yaml(f"sqlite:///{db}", name="keep"))
    result = search("run", str(study_file), "--data-root", str(sentiment_root), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "loss/name over ['focal', 'ghm']" in result.stderr and "['cross_entropy', 'focal']" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(db) == before


def test_ctrl_c_leaves_no_trial_running(tmp_path: Path, sentiment_root: Path) -> None:
    import signal
    import sqlite3
    import time

    db = tmp_path / "interrupted.db"
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(f"sqlite:///{db}", trials=200, max_epochs=3, concurrency=2))
    process = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "run", str(study_file), "--data-root", str(sentiment_root)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    deadline = time.monotonic() + 180
    finished = 0
    while finished < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        try:
            finished = sqlite3.connect(db).execute("select count(*) from trials where state in ('COMPLETE', 'PRUNED')").fetchone()[0]
        except sqlite3.Error:
            finished = 0
    assert finished >= 3, "the search did not get going"
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=180)

    assert process.returncode == 130, output
    assert "interrupted" in output
    states = dict(sqlite3.connect(db).execute("select state, count(*) from trials group by state").fetchall())
    assert "RUNNING" not in states, states
    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{db}")
    cut_off = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert cut_off, states
    for trial in cut_off:
        assert trial.user_attrs["state_reason"].startswith("interrupted") and trial.user_attrs["interrupted"] is True
    # Each cut-off trial is queued again with the same parameters, for the next run to resume.
    # (Start-up variations queued before the search and not started yet wait too, for the next run.)
    requeued = {t.user_attrs["requeued_from"]: t for t in study.trials if t.state == optuna.trial.TrialState.WAITING and "requeued_from" in t.user_attrs}
    # (A trial cut off before its parameters were sampled has nothing to re-run.)
    sampled = [t for t in cut_off if t.params]
    assert sorted(requeued) == sorted(t.number for t in sampled)
    for trial in sampled:
        assert study.trials[requeued[trial.number].number].system_attrs["fixed_params"] == trial.params


def test_ray_dashboard_is_refused_where_it_cannot_start(tmp_path: Path, seeded, sentiment_root: Path) -> None:
    db, before = seeded
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(f"sqlite:///{db}"))
    # A cluster has the dashboard it was started with: refused before anything runs.
    joined = search("run", str(study_file), "--data-root", str(sentiment_root), "--ray-dashboard", "--address", "127.0.0.1:1", cwd=tmp_path)
    assert joined.returncode == 2, joined.stderr
    assert joined.stderr.startswith("search: error: --ray-dashboard") and "--include-dashboard" in joined.stderr
    try:
        import ray.dashboard.optional_deps  # noqa: F401
    except ImportError:
        # Without ray[default]'s packages: one line that says what to install, and nothing written.
        local = search("run", str(study_file), "--data-root", str(sentiment_root), "--ray-dashboard", cwd=tmp_path)
        assert local.returncode == 2, local.stderr
        assert "Traceback" not in local.stderr + local.stdout
        assert local.stderr.startswith("search: error: --ray-dashboard") and "pip install 'ray[default]'" in local.stderr
    assert snapshot(db) == before
