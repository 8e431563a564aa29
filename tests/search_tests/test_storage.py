"""Storages that many searches and readers share: a real PostgreSQL server, and an SQLite file
that the dashboard reads while a search writes it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO_ROOT, toy_study_yaml

optuna.logging.set_verbosity(optuna.logging.WARNING)


def search_process(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "search.cli", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def test_two_studies_at_once_in_one_postgresql_database(tmp_path: Path, sentiment_root: Path, postgres_url: str) -> None:
    processes = {}
    for name, trials in (("alpha", 3), ("beta", 4)):
        study_file = tmp_path / f"{name}.yaml"
        study_file.write_text(toy_study_yaml(postgres_url, name=name, trials=trials, max_epochs=2, concurrency=1))
        processes[name] = search_process(
            ["run", str(study_file), "--data-root", str(sentiment_root), "--storage-path", str(tmp_path / name)], tmp_path,
        )
    outputs = {name: process.communicate(timeout=600)[0] for name, process in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, outputs[name][-3000:]
        assert "postgresql+psycopg://search:***@" in outputs[name]  # the password is never printed

    for name, trials in (("alpha", 3), ("beta", 4)):
        study = optuna.load_study(study_name=name, storage=postgres_url)
        finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(study.trials) == len(finished) == trials
        assert study.user_attrs["study_file"].endswith(f"{name}.yaml")
        for trial in finished:
            assert trial.intermediate_values and trial.user_attrs["strategy"] and trial.user_attrs["config"]
            assert trial.number < trials  # numbering is per study: nothing leaked from the other


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("problem", ["wrong password", "no server"])
def test_bad_postgresql_url_is_a_clear_error(tmp_path: Path, sentiment_root: Path, postgres_url: str, problem: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    bad = url.set(password="not-the-password") if problem == "wrong password" else url.set(port=closed_port())
    bad_url = bad.render_as_string(hide_password=False)
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(bad_url, name="never"))
    result = run_cli(["run", str(study_file), "--data-root", str(sentiment_root)], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot open the storage 'postgresql+psycopg://search:***@127.0.0.1" in result.stderr
    expected = "password authentication failed" if problem == "wrong password" else "Connection refused"
    assert expected in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout
    assert "never" not in optuna.get_all_study_names(postgres_url)


def test_dashboard_reading_sqlite_while_a_search_writes(tmp_path: Path, sentiment_root: Path) -> None:
    db = tmp_path / "shared.db"
    storage = f"sqlite:///{db}"
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(storage, trials=6, max_epochs=3, concurrency=2))
    # The study must exist before the dashboard's first read of its trials.
    first = run_cli(["run", str(study_file), "--data-root", str(sentiment_root), "--trials", "1", "--storage-path", str(tmp_path / "r")], tmp_path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]

    port = closed_port()
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "dashboard", "--storage", storage, "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    answers: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def read_continuously() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/1", timeout=120) as response:
                    answers.append(response.status)
            except OSError as error:
                if answers:  # once serving, every read must succeed
                    answers.append(-1)
                    errors.append(f"{error}: {getattr(error, 'read', lambda: b'')()[:300]!r}")
                time.sleep(0.2)

    reader = threading.Thread(target=read_continuously, daemon=True)
    reader.start()
    try:
        search = run_cli(["run", str(study_file), "--data-root", str(sentiment_root), "--storage-path", str(tmp_path / "r")], tmp_path)
    finally:
        stop.set()
        reader.join(timeout=150)
        dashboard.terminate()
        dashboard.wait(timeout=30)
    assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]
    assert "database is locked" not in search.stdout + search.stderr
    assert len(answers) >= 5 and set(answers) == {200}, (errors[:5], dashboard.stderr.read()[-3000:])
    study = optuna.load_study(study_name="toy", storage=storage)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) == 6


def test_a_read_only_database_gives_one_line_and_stays_intact(tmp_path: Path, sentiment_root: Path) -> None:
    from tests.search_tests.test_cli import search, seed_database, snapshot

    db = tmp_path / "kept.db"
    before = seed_database(db)
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(f"sqlite:///{db}", name="keep"))
    # SQLite's read-only mode: what a file on a read-only mount gives (root ignores file permissions).
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"

    result = search("run", str(study_file), "--data-root", str(sentiment_root), "--storage", read_only, cwd=tmp_path)

    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.startswith("search: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "refuses writes" in result.stderr and "readonly database" in result.stderr
    assert snapshot(db) == before
