"""Orphan reconciliation on a study in memory: which orphans are re-queued, and with what."""

from __future__ import annotations

import socket
import subprocess
import sys

import optuna
from optuna.trial import TrialState

from search.recovery import counts_toward_budget, reconcile_orphans, trusted_checkpoint


def dead_driver() -> dict[str, object]:
    """The identity of a process on this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return {"host": socket.gethostname(), "pid": child.pid, "started": 1}


def test_orphans_with_parameters_are_requeued_and_those_without_are_not() -> None:
    study = optuna.create_study(direction="maximize")
    sampled = study.ask()
    sampled.suggest_float("lr", 1e-4, 1e-1, log=True)
    sampled.report(0.6, 1)
    unsampled = study.ask()  # killed between creating the trial and sampling its parameters
    for trial in (sampled, unsampled):
        study._storage.set_trial_user_attr(trial._trial_id, "driver", dead_driver())
    lines: list[str] = []

    assert reconcile_orphans(study, lines.append) == 2

    trials = study.get_trials(deepcopy=False)
    first, second = trials[sampled.number], trials[unsampled.number]
    assert first.state == second.state == TrialState.FAIL
    assert not counts_toward_budget(first) and not counts_toward_budget(second)
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert [t.user_attrs["requeued_from"] for t in queued] == [sampled.number]
    assert queued[0].system_attrs["fixed_params"] == first.params
    assert "failed, re-queued, re-runs from the start" in lines[0]
    assert "failed, not re-queued: no parameters sampled yet" in lines[1]


def test_a_recorded_checkpoint_is_trusted_only_under_the_storage_path(tmp_path) -> None:
    root = tmp_path / "ray_results"
    inside = root / "exp" / "trial" / "checkpoint_000001"
    inside.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").symlink_to(outside)  # under the root by name, elsewhere in fact
    (tmp_path / "root-link").symlink_to(root)  # the root reached through a link: still the root

    assert trusted_checkpoint(str(inside), str(root)) == (str(inside), None)
    assert trusted_checkpoint(str(tmp_path / "root-link" / "exp" / "trial" / "checkpoint_000001"), str(root))[0] == str(inside)
    for path in (outside, root / "link", root / ".." / "elsewhere", tmp_path / "ray_results2"):
        real, why = trusted_checkpoint(str(path), str(root))
        assert real is None and "lies outside this run's storage path" in why, path
    assert trusted_checkpoint(str(root / "gone"), str(root)) == (None, f"checkpoint {root / 'gone'} is gone: trained from the start")
    assert "not a local folder" in trusted_checkpoint(str(inside), "s3://bucket/ray_results")[1]
    assert "is not a path" in trusted_checkpoint(["not", "a", "path"], str(root))[1]
