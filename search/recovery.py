"""Studies that survive their driver: who runs a trial, orphan reconciliation, re-queuing.

Ray's driver is the only writer of a study's trials. If it dies (SIGKILL, lost machine), the
trials it had started stay RUNNING in the Optuna DB forever: Optuna's own heartbeat works only
inside `study.optimize`, not with the ask/tell interface Ray's searcher uses. So every trial
records the driver that runs it (`driver`: host, pid, process start) and a `heartbeat` time the
driver refreshes while the trial runs. A later run of the study fails the orphans (their driver
process is gone on this host, or their heartbeat is older than `STALE_AFTER_S`) and re-queues
their parameters, with their last checkpoint, so the next run resumes them instead of
restarting them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.start import BASELINE_ADAPTED_ATTR, BASELINE_ATTR, QUEUED_ATTR

HEARTBEAT_S = 30.0
# A trial whose driver runs on another host is orphaned when its heartbeat is this old.
STALE_AFTER_S = 300.0

# User attributes of a re-queued trial: what it resumes from.
REQUEUED_FROM = "requeued_from"
RESUME_CHECKPOINT = "resume_checkpoint"
RESUME_EPOCH = "resume_epoch"
RESUME_VALUES = "resume_values"


def driver_identity() -> dict[str, Any]:
    """This process, as recorded on the trials it runs."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start_ticks(os.getpid())}


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            # Field 22; the command name (field 2) may hold spaces, so split after its ')'.
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def driver_is_gone(driver: dict[str, Any]) -> bool:
    """True when `driver` ran on this host and that process no longer exists."""
    if driver.get("host") != socket.gethostname():
        return False
    pid = int(driver.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    recorded, now = driver.get("started"), process_start_ticks(pid)
    return recorded is not None and now is not None and recorded != now


def orphan_reason(trial: FrozenTrial, now: float | None = None) -> str | None:
    """Why a RUNNING trial has no driver any more, or None while its driver may be alive."""
    driver = trial.user_attrs.get("driver")
    now = time.time() if now is None else now
    if not isinstance(driver, dict):
        # Not signed: another tool's trial, or a driver killed between creating and signing it
        # (milliseconds). Only the latter is left untouched for long with nothing in it.
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        if not trial.params and not trial.intermediate_values and now - started > STALE_AFTER_S:
            return f"orphaned: created {now - started:.0f} s ago and never sampled"
        return None
    if driver_is_gone(driver):
        return f"orphaned: its driver (pid {driver.get('pid')} on {driver.get('host')}) is gone"
    heartbeat = trial.user_attrs.get("heartbeat")
    if isinstance(heartbeat, (int, float)) and now - heartbeat > STALE_AFTER_S:
        return f"orphaned: no heartbeat from its driver on {driver.get('host')} for {now - heartbeat:.0f} s"
    return None


def trusted_checkpoint(path: Any, storage_root: str | None) -> tuple[str | None, str | None]:
    """Whether a checkpoint path read from the study may be loaded: (its real path, None) when it
    lies under this run's storage path (symlinks resolved), else (None, why not). Anyone who can
    write a row of the study could otherwise point a resumed trial at any file on the machine."""
    if not isinstance(path, str) or not path:
        return None, f"recorded checkpoint {path!r} is not a path: trained from the start"
    if not storage_root or "://" in storage_root:
        return None, f"checkpoint {path} not loaded: the storage path {storage_root!r} is not a local folder to check it against; trained from the start"
    real, root = os.path.realpath(path), os.path.realpath(storage_root)
    if os.path.commonpath([real, root]) != root:
        return None, (
            f"checkpoint {path} not loaded: it lies outside this run's storage path {root} "
            "(give the run that wrote it --storage-path to resume from it); trained from the start"
        )
    if not os.path.isdir(real):
        return None, f"checkpoint {path} is gone: trained from the start"
    return real, None


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queues `trial`'s parameters again, with its last checkpoint to resume from (if any)."""
    user_attrs: dict[str, Any] = {REQUEUED_FROM: trial.number}
    # What the trial was queued as (a baseline stays the baseline: ASHA must not stop it).
    user_attrs.update({key: trial.user_attrs[key] for key in (BASELINE_ATTR, BASELINE_ADAPTED_ATTR, QUEUED_ATTR) if key in trial.user_attrs})
    checkpoint = trial.user_attrs.get("checkpoint")
    if isinstance(checkpoint, dict) and checkpoint.get("path"):
        epoch = int(checkpoint["epoch"])
        user_attrs[RESUME_CHECKPOINT] = checkpoint["path"]
        user_attrs[RESUME_EPOCH] = epoch
        user_attrs[RESUME_VALUES] = {str(step): value for step, value in trial.intermediate_values.items() if step <= epoch}
    study.enqueue_trial(trial.params, user_attrs=user_attrs, skip_if_exists=False)


def fail_and_requeue(study: optuna.Study, trial: FrozenTrial, reason: str) -> str | None:
    """Marks a RUNNING trial FAIL (`interrupted`, so it does not count toward the budget) and
    queues its parameters again. A trial cut off before its parameters were sampled has nothing to
    re-run: the budget it leaves goes to a new trial. Returns what became of it (also appended to
    its `state_reason`), or None when another process finished it meanwhile."""
    checkpoint = trial.user_attrs.get("checkpoint")
    if not trial.params:
        outcome = "not re-queued: no parameters sampled yet"
    elif isinstance(checkpoint, dict) and checkpoint.get("path"):
        outcome = f"re-queued, resumes from its epoch-{checkpoint['epoch']} checkpoint"
    else:
        outcome = "re-queued, re-runs from the start"
    storage = study._storage
    storage.set_trial_user_attr(trial._trial_id, "state_reason", f"{reason}; {outcome}")
    storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
    try:
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    if trial.params:
        requeue(study, trial)
    return outcome


def reconcile_orphans(study: optuna.Study, log: Callable[[str], None] = print) -> int:
    """Fails and re-queues the study's RUNNING trials whose driver is gone; returns how many."""
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = orphan_reason(trial)
        if reason is None:
            continue
        outcome = fail_and_requeue(study, trial, reason)
        if outcome is not None:
            log(f"trial {trial.number}: {reason}; failed, {outcome}")
            count += 1
    return count


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished trials count, except those cut off by an interruption (they are re-queued)."""
    return trial.state.is_finished() and not trial.user_attrs.get("interrupted", False)
