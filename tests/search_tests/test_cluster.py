"""A search on an existing multi-node Ray cluster (several raylets on this machine), with a worker
node lost mid-trial; and a Ray address that does not answer."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO_ROOT, toy_study_yaml, write_sentiment_csv

optuna.logging.set_verbosity(optuna.logging.WARNING)

MAX_EPOCHS = 8


@pytest.fixture()
def cluster():
    from ray.cluster_utils import Cluster

    # Short temp dir: Ray's socket paths have a length limit. The head runs no trials.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "temp_dir": temp_dir, "include_dashboard": False})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def checkpointed_epoch(db: Path) -> int:
    """The epoch of the checkpoint the running trial last recorded (0 if none yet)."""
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            row = connection.execute(
                "select a.value_json from trials t join trial_user_attributes a on a.trial_id = t.trial_id "
                "where t.state = 'RUNNING' and a.key = 'checkpoint'"
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(__import__("json").loads(row[0])["epoch"]) if row else 0


def test_worker_node_lost_mid_trial_finishes_from_its_checkpoint(tmp_path: Path, cluster) -> None:
    data_root = tmp_path / "data"
    (data_root / "toy").mkdir(parents=True)
    write_sentiment_csv(data_root / "toy", {"train": 6000, "validation": 300, "test": 300})  # epochs of about a second
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()

    db = tmp_path / "cluster.db"
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(f"sqlite:///{db}", trials=1, max_epochs=MAX_EPOCHS, concurrency=1, checkpoint_every_s=0))
    process = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "run", str(study_file), "--data-root", str(data_root),
         "--address", cluster.address, "--storage-path", str(tmp_path / "shared_results")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        deadline = time.monotonic() + 300
        while checkpointed_epoch(db) < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        lost_after = checkpointed_epoch(db)
        assert 2 <= lost_after < MAX_EPOCHS, f"could not catch the trial mid-way (checkpoint epoch {lost_after})"
        cluster.add_node(num_cpus=1)  # where the retry can run
        cluster.remove_node(worker, allow_graceful=False)  # kills that node's raylet and its workers
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output[-4000:]
    assert f"joined the cluster at {cluster.address}" in output

    (trial,) = optuna.load_study(study_name="toy", storage=f"sqlite:///{db}").trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("state_reason")
    assert sorted(trial.intermediate_values) == list(range(1, MAX_EPOCHS + 1))
    # Restarted once, from the checkpoint taken before the loss: not from epoch 0.
    (restored_at,) = trial.user_attrs["restored_at_epochs"]
    assert lost_after <= restored_at < MAX_EPOCHS


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ray_address_that_does_not_answer(tmp_path: Path, sentiment_root: Path) -> None:
    db = tmp_path / "untouched.db"
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(f"sqlite:///{db}"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "search.cli", "run", str(study_file), "--data-root", str(sentiment_root), "--address", f"127.0.0.1:{closed_port()}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "does not answer" in result.stderr and "ray start --head" in result.stderr
    assert "Traceback" not in result.stderr
    assert not db.exists() or not optuna.get_all_study_names(f"sqlite:///{db}")
    assert time.monotonic() - started < 60  # no minute-long retries before the message
