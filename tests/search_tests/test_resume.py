"""A driver killed with SIGKILL mid-study, then the same command again: the study continues."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.recovery import counts_toward_budget
from tests.conftest import REPO_ROOT, toy_study_yaml

optuna.logging.set_verbosity(optuna.logging.WARNING)

TRIALS = 8
MAX_EPOCHS = 6


def start_search(args: list[str], cwd: Path, ray_tmp: str) -> subprocess.Popen:
    # Own session: the kill takes the driver and the local Ray it started, as a lost machine would.
    return subprocess.Popen(
        [sys.executable, "-m", "search.cli", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_TMPDIR": ray_tmp}, start_new_session=True,
    )


def running_with_checkpoint(db: Path) -> tuple[int, int]:
    """(finished trials, RUNNING trials that have recorded a checkpoint), read with plain SQL."""
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            finished = connection.execute("select count(*) from trials where state in ('COMPLETE', 'PRUNED')").fetchone()[0]
            checkpointed = connection.execute(
                "select count(*) from trials t join trial_user_attributes a on a.trial_id = t.trial_id "
                "where t.state = 'RUNNING' and a.key = 'checkpoint'"
            ).fetchone()[0]
            return finished, checkpointed
    except sqlite3.Error:
        return 0, 0


def test_sigkilled_driver_then_run_again_finishes_the_study(tmp_path: Path, sentiment_root: Path) -> None:
    db = tmp_path / "killed.db"
    storage = f"sqlite:///{db}"
    study_file = tmp_path / "toy.yaml"
    study_file.write_text(toy_study_yaml(storage, trials=TRIALS, max_epochs=MAX_EPOCHS, concurrency=2, checkpoint_every_s=0))
    args = ["run", str(study_file), "--data-root", str(sentiment_root), "--storage-path", str(tmp_path / "ray_results")]
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit

    process = start_search(args, tmp_path, ray_tmp)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        finished, checkpointed = running_with_checkpoint(db)
        if finished >= 2 and checkpointed >= 1:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the search ended before it could be killed:\n" + process.communicate()[0][-3000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)

    before = optuna.load_study(study_name="toy", storage=storage).trials
    kept = {t.number: (t.state, t.value, dict(t.intermediate_values)) for t in before if t.state.is_finished()}
    orphans = {t.number: t for t in before if t.state == TrialState.RUNNING}
    assert orphans and len(kept) >= 2

    again = subprocess.run(
        [sys.executable, "-m", "search.cli", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_TMPDIR": ray_tmp},
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "failed, re-queued" in again.stdout

    study = optuna.load_study(study_name="toy", storage=storage)
    trials = study.trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert sum(counts_toward_budget(t) for t in trials) == TRIALS
    # Everything finished before the kill is still there, unchanged.
    for number, recorded in kept.items():
        trial = trials[number]
        assert (trial.state, trial.value, dict(trial.intermediate_values)) == recorded
    assert any("resumed_from_epoch" in t.user_attrs for t in trials), "no orphan resumed from its checkpoint"
    # Each orphan is FAIL with the reason, and its parameters were run again.
    for number, orphan in orphans.items():
        failed = trials[number]
        assert failed.state == TrialState.FAIL and failed.user_attrs["state_reason"].startswith("orphaned: its driver")
        rerun = [t for t in trials if t.user_attrs.get("requeued_from") == number]
        if not orphan.params:  # killed between creating the trial and sampling it: nothing to re-run
            assert rerun == []
            continue
        assert len(rerun) == 1 and rerun[0].params == orphan.params and counts_toward_budget(rerun[0])
        # An orphan that had a checkpoint resumes from it: its earlier epochs are carried over,
        # and it does not train them again.
        checkpoint = orphan.user_attrs.get("checkpoint")
        if checkpoint and rerun[0].state != TrialState.FAIL:
            resumed = rerun[0]
            assert resumed.user_attrs["resumed_from_epoch"] == checkpoint["epoch"]
            carried = {step: value for step, value in orphan.intermediate_values.items() if step <= checkpoint["epoch"]}
            assert {s: v for s, v in resumed.intermediate_values.items() if s in carried} == carried
            assert min(resumed.intermediate_values) == 1 and max(resumed.intermediate_values) == resumed.user_attrs["epochs_trained"]
