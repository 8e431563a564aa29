"""`budget.time_budget_s`: the search stops when its wall clock runs out, every trial accounted for
in the Optuna DB, and `search resume` continues the trials it cut off."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.recovery import counts_toward_budget
from tests.conftest import REPO_ROOT, toy_study_yaml

TRIALS = 200  # far more than the time budget lets finish
TIME_BUDGET_S = 10


def _search(args: list[str], cwd: Path, ray_tmp: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_TMPDIR": ray_tmp},
    )


def test_a_time_budget_ends_the_run_and_resume_continues_what_it_cut_off(tmp_path: Path, sentiment_root: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'timed.db'}"
    study_file = tmp_path / "toy.yaml"
    text = toy_study_yaml(storage, trials=TRIALS, max_epochs=6, concurrency=2, checkpoint_every_s=0)
    study_file.write_text(text.replace("  checkpoint_every_s: 0", f"  checkpoint_every_s: 0\n  time_budget_s: {TIME_BUDGET_S}"))
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    flags = ["--data-root", str(sentiment_root), "--storage-path", str(tmp_path / "ray_results")]

    first = _search(["run", str(study_file), *flags], tmp_path, ray_tmp)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"time budget of {TIME_BUDGET_S} s reached" in first.stdout, first.stdout[-3000:]

    trials = optuna.load_study(study_name="toy", storage=storage).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    counted = sum(counts_toward_budget(t) for t in trials)
    assert counted < TRIALS, f"{counted} trials counted: the budget did not cut the run"
    cut_off = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("interrupted")]
    # Waiting trials are the re-queued ones, and on a loaded machine also start-up trials the
    # driver queued (baseline variations) that the budget left unstarted: they have no requeued_from.
    requeued = [t for t in trials if t.state == TrialState.WAITING and "requeued_from" in t.user_attrs]
    assert cut_off, "no trial was cut off by the time budget"
    # Each trial cut off is queued again with its parameters (unless cut before it was sampled).
    assert sorted(t.user_attrs["requeued_from"] for t in requeued) == sorted(t.number for t in cut_off if t.params)

    # The flag overrides the recorded budget: on a loaded machine 10 s may not finish a trial.
    again = _search(["resume", "toy", "--storage", storage, "--trials", str(counted + 1), "--time-budget", "600", *flags], tmp_path, ray_tmp)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    trials = optuna.load_study(study_name="toy", storage=storage).trials
    assert sum(counts_toward_budget(t) for t in trials) == counted + 1
    continued = [t for t in trials if t.user_attrs.get("requeued_from") is not None and counts_toward_budget(t)]
    assert continued, "resume did not run a trial the time budget had cut off"
