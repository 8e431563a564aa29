"""The database goes away mid-search (a real PostgreSQL server, stopped and started again): a short
outage is waited out and loses no result; a long one stops the search with one line, and
`search resume` then completes the study. An SQLite file locked by another process past the busy
timeout is waited out the same way."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.recovery import counts_toward_budget
from search.testing import PostgresServer, PostgresUnavailable, restartable_postgres_server
from tests.conftest import REPO_ROOT, toy_study_yaml

optuna.logging.set_verbosity(optuna.logging.WARNING)

TRIALS, MAX_EPOCHS = 6, 4
PASSWORD = "pw-restart-7f3a"  # unlike the user name: a printed password would show


@pytest.fixture()
def server() -> Iterator[PostgresServer]:
    """A server of its own: stopping the session's would break the other tests."""
    try:
        with restartable_postgres_server(password=PASSWORD) as handle:
            yield handle
    except PostgresUnavailable as error:
        pytest.skip(str(error))


def start_search(tmp_path: Path, sentiment_root: Path, url: str, retry_s: float) -> tuple[subprocess.Popen, list[str]]:
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(url, trials=TRIALS, max_epochs=MAX_EPOCHS, concurrency=2, checkpoint_every_s=0))
    run_args = ["--data-root", str(sentiment_root), "--storage-path", str(tmp_path / "ray_results")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SEARCH_DB_RETRY_S": str(retry_s)}
    process = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "run", str(study_file), *run_args], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    return process, run_args


def wait_for_a_trial_in_flight(url: str, process: subprocess.Popen) -> None:
    """Until one trial has finished and another has reported an epoch but not finished."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        try:
            trials = optuna.load_study(study_name="toy", storage=url).trials
        except Exception:  # the study is not created yet
            trials = []
        if any(t.state.is_finished() for t in trials) and any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials):
            return
        time.sleep(0.3)
    raise AssertionError("no trial in flight to cut off:\n" + (process.communicate()[0][-3000:] if process.poll() is not None else ""))


def assert_study_whole(url: str) -> list[optuna.trial.FrozenTrial]:
    """Budget met once, nothing left running, and every counted trial has its whole learning curve."""
    trials = optuna.load_study(study_name="toy", storage=url).trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    counted = [t for t in trials if counts_toward_budget(t)]
    assert len(counted) == TRIALS
    for trial in counted:
        assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED), (trial.number, trial.user_attrs.get("error"))
        assert set(trial.intermediate_values) == set(range(1, trial.user_attrs["epochs_trained"] + 1)), trial.number
    return trials


def test_a_database_restart_mid_search_is_waited_out_and_loses_nothing(server: PostgresServer, tmp_path: Path, sentiment_root: Path) -> None:
    process, _ = start_search(tmp_path, sentiment_root, server.url, retry_s=120)
    try:
        wait_for_a_trial_in_flight(server.url, process)
        server.stop()  # every connection cut, as in a restart
        time.sleep(12)  # trials go on training and reporting meanwhile
        assert process.poll() is None, "the search did not wait for its database"
        server.start()
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out[-2000:] + err[-12000:]
    assert "Traceback" not in err and "search: error" not in err, err
    assert PASSWORD not in out + err and "search:***@" in out
    trials = assert_study_whole(server.url)
    assert len(trials) == TRIALS  # nothing failed, nothing re-run: every result waited for the database


def test_a_long_outage_stops_the_search_in_one_line_and_resume_completes_it(server: PostgresServer, tmp_path: Path, sentiment_root: Path) -> None:
    process, run_args = start_search(tmp_path, sentiment_root, server.url, retry_s=5)
    try:
        wait_for_a_trial_in_flight(server.url, process)
        server.stop()
        out, err = process.communicate(timeout=300)  # it gives up after 5 s of retries
    finally:
        if process.poll() is None:
            process.kill()
        server.start()
    errors = [line for line in err.splitlines() if line.startswith("search: error:")]
    assert process.returncode == 2 and len(errors) == 1 and err.strip().endswith(errors[0]), out[-2000:] + err[-3000:]
    assert "Traceback" not in err
    assert errors[0].startswith("search: error: the study database 'postgresql+psycopg://search:***@")
    assert "did not answer for 5 s (" in errors[0] and "search resume STUDY" in errors[0]

    resumed = subprocess.run(
        [sys.executable, "-m", "search.cli", "resume", "toy", "--storage", server.url, *run_args], cwd=tmp_path,
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert PASSWORD not in out + err + resumed.stdout + resumed.stderr
    trials = assert_study_whole(server.url)
    cut_off = [t for t in trials if t.state == TrialState.FAIL]
    assert cut_off and all(t.user_attrs.get("interrupted") for t in cut_off)  # re-queued, not counted


def test_an_sqlite_file_locked_past_the_busy_timeout_is_waited_out(tmp_path: Path, sentiment_root: Path) -> None:
    import sqlite3

    db = tmp_path / "locked.db"
    url = f"sqlite:///{db}"
    # A 1 s busy timeout, so that an 8 s lock outlasts it and the storage's own retries must wait.
    os.environ["SEARCH_SQLITE_BUSY_S"] = "1"
    try:
        process, _ = start_search(tmp_path, sentiment_root, url, retry_s=120)
    finally:
        del os.environ["SEARCH_SQLITE_BUSY_S"]
    try:
        wait_for_a_trial_in_flight(url, process)
        other = sqlite3.connect(db, timeout=30, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the file: every write of the search is refused
        time.sleep(8)
        assert process.poll() is None, "the search did not wait for its locked database"
        other.execute("COMMIT")
        other.close()
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out[-2000:] + err[-12000:]
    assert "Traceback" not in err and "search: error" not in err, err
    trials = assert_study_whole(url)
    assert len(trials) == TRIALS  # nothing failed, nothing re-run
