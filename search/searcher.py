"""Ray Tune's OptunaSearch, made to record in Optuna what actually happened to each trial.

Out of the box, a trial that ASHA stops lands COMPLETE with its half-trained value and without its
last epoch among the intermediate values (Tune does not pass the stopping result to
`on_trial_result`). Here:

- every epoch is an intermediate value (step = epoch), the last one included;
- a trial that ended before `max_epochs` without error is PRUNED (ASHA stopped it);
- a trial that reached `max_epochs` is COMPLETE with its final value;
- a crashed trial is FAIL, with the error in the user attribute `error` (the failure text comes
  from a Tune callback, which Tune calls right after the searcher);
- a trial whose trainable caught its own error (`trial_error` in its last result, see
  `search.trial.guard_trial`) is FAIL with that error: an exception, NaN or out-of-memory is
  deterministic, so it is not retried (Ray retries only lost workers, from the checkpoint);
- user attributes: the resolved config, a strategy summary, parameter count, epochs trained,
  wall time, final metrics, and a one-line `state_reason`; `driver`, `heartbeat` and the last
  `checkpoint` let a later run resume what a dead driver left (see `search.recovery`).

Steps are epochs (`epoch` in the result), not Ray iterations: a trial resumed from an epoch-k
checkpoint in a new run starts at Ray iteration 1 but at epoch k + 1.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch

from search import recovery
from search.start import BASELINE_ATTR
from search.resilient_storage import StorageUnavailable
from search.trial import RESUME_FROM_KEY
from trainables.runner import RESUME_NOTE

logger = logging.getLogger(__name__)

# Result keys that are Ray's bookkeeping or recorded elsewhere; the rest are the trial's metrics.
_NOT_METRICS = {
    "epoch", "param_count", "timestamp", "checkpoint_dir_name", "should_checkpoint", "done",
    TRAINING_ITERATION, "trial_id", "date", "time_this_iter_s", "time_total_s", "pid", "hostname",
    "node_ip", "time_since_restore", "iterations_since_restore", "config", "experiment_tag",
    "trial_error", "trial_traceback", RESUME_NOTE,
}


def result_epoch(result: Mapping[str, Any]) -> int:
    """The epoch a result reports (Ray's iteration count for trainables that do not say)."""
    return int(result.get("epoch", result[TRAINING_ITERATION]))


def _stop_if_storage_gone(hook: Callable[..., None]) -> Callable[..., None]:
    """A searcher hook whose `StorageUnavailable` ends the search cleanly: Ray swallows errors
    raised in some hooks (logging their traceback) and wraps others, so the error is kept and
    raised from `TrialRecorder.on_step_begin`, and again after the run by `close_unfinished`."""

    @functools.wraps(hook)
    def guarded(self: RecordingOptunaSearch, *args: Any, **kwargs: Any) -> None:
        try:
            hook(self, *args, **kwargs)
        except StorageUnavailable as error:
            self.storage_gone = self.storage_gone or error

    return guarded


class RecordingOptunaSearch(OptunaSearch):
    def __init__(
        self,
        *args: Any,
        max_epochs: int,
        describe: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        checkpoint_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        """`describe(config)` returns user attributes recorded when a trial starts.
        `checkpoint_root`: this run's storage path; a re-queued trial resumes only from a
        checkpoint under it (see `recovery.trusted_checkpoint`)."""
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._checkpoint_root = checkpoint_root
        # Optuna trial number -> (epoch, earlier values) of a re-queued trial handed a checkpoint,
        # until its first result says whether its worker resumed from it.
        self._resume_pending: dict[int, tuple[int, dict[int, float]]] = {}
        self._describe = describe
        self._last_step: dict[int, int] = {}  # Optuna trial number -> last epoch recorded
        self._counted_params: set[int] = set()
        self._driver = recovery.driver_identity()
        self._failed_awaiting_reason: set[str] = set()
        self._full_budget: set[str] = set()  # Ray trial ids of baseline trials: ASHA lets them run on
        # Set when the database stayed away past its retry bound (see `_stop_if_storage_gone`).
        self.storage_gone: StorageUnavailable | None = None

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def trial_number(self, trial_id: str) -> int | None:
        """The Optuna trial number of a Ray trial (what the dashboard shows)."""
        ot_trial = self._ot_trials.get(trial_id)
        return ot_trial.number if ot_trial is not None else None

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials and callable(self._space):
            # Ask here rather than in OptunaSearch, to sign the trial before sampling it: a driver
            # killed while sampling leaves a RUNNING trial that a later run knows is orphaned.
            ot_trial = self._ot_study.ask()
            ot_trial.set_user_attr("driver", self._driver)
            ot_trial.set_user_attr("heartbeat", time.time())
            self._ot_trials[trial_id] = ot_trial
            if ot_trial.user_attrs.get(BASELINE_ATTR):  # enqueued so (search.start), or re-queued from one
                self._full_budget.add(trial_id)
        config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("ray_trial_id", trial_id)
        ot_trial.set_user_attr("config", config)
        for key, value in (self._describe(config) if self._describe else {}).items():
            ot_trial.set_user_attr(key, value)
        resume_from = self._resume_point(ot_trial)
        if resume_from is not None:
            config = {**config, RESUME_FROM_KEY: resume_from}
        return config

    def runs_full_budget(self, trial_id: str) -> bool:
        """Whether the Ray trial is the study's baseline, which trains to the full epoch budget."""
        return trial_id in self._full_budget

    def _resume_point(self, ot_trial: optuna.Trial) -> str | None:
        """For a re-queued trial with a checkpoint still on disk under this run's storage path: the
        checkpoint directory; its earlier epochs are carried over once the worker has loaded it."""
        attrs = ot_trial.user_attrs
        if not attrs.get(recovery.RESUME_CHECKPOINT):
            return None
        path, refusal = recovery.trusted_checkpoint(attrs[recovery.RESUME_CHECKPOINT], self._checkpoint_root)
        if path is None:
            ot_trial.set_user_attr(RESUME_NOTE, refusal)
            return None
        try:
            epoch = int(attrs[recovery.RESUME_EPOCH])
            values = {int(step): float(value) for step, value in attrs.get(recovery.RESUME_VALUES, {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            ot_trial.set_user_attr(RESUME_NOTE, f"checkpoint {path} not loaded: its recorded epoch or values are malformed ({error}); trained from the start")
            return None
        self._resume_pending[ot_trial.number] = (epoch, values)
        return path

    def _settle_resume(self, ot_trial: optuna.Trial, result: Mapping[str, Any]) -> None:
        """At a re-queued trial's first result: the worker resumed after the checkpoint's epoch
        (its earlier epochs are carried over) or refused the checkpoint and trained from the start
        (its note is recorded)."""
        pending = self._resume_pending.pop(ot_trial.number, None)
        if pending is None:
            return
        if result.get(RESUME_NOTE):
            ot_trial.set_user_attr(RESUME_NOTE, str(result[RESUME_NOTE]))
            return
        epoch, values = pending
        for step, value in sorted(values.items()):
            if step <= epoch:
                ot_trial.report(value, step)
        ot_trial.set_user_attr("resumed_from_epoch", epoch)
        self._last_step[ot_trial.number] = max(self._last_step.get(ot_trial.number, 0), epoch)

    @_stop_if_storage_gone
    def record_checkpoint(self, trial_id: str, path: str, epoch: int) -> None:
        """The trial's latest checkpoint: what a later run resumes it from if this driver dies."""
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        self._ot_trials[trial_id].set_user_attr("checkpoint", {"path": path, "epoch": epoch})

    def heartbeat(self) -> None:
        """Tells the DB that this driver still runs its trials."""
        now = time.time()
        for trial_id, ot_trial in self._ot_trials.items():
            if trial_id not in self._completed_trials:
                ot_trial.set_user_attr("heartbeat", now)

    @_stop_if_storage_gone
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if "trial_error" in result:
            return  # the trial's own error report, not an epoch
        ot_trial = self._ot_trials[trial_id]
        self._settle_resume(ot_trial, result)
        step = result_epoch(result)
        if self._last_step.get(ot_trial.number, 0) >= step:
            return  # already recorded
        self._last_step[ot_trial.number] = step
        value = result.get(self.metric)
        if value is not None and math.isfinite(value):
            ot_trial.report(float(value), step)
        if "param_count" in result and ot_trial.number not in self._counted_params:
            self._counted_params.add(ot_trial.number)
            ot_trial.set_user_attr("param_count", int(result["param_count"]))
        restored = result.get("iterations_since_restore")
        if restored is not None and restored < result.get(TRAINING_ITERATION, restored) and restored == 1:
            # Ray restarted the trial from its checkpoint (a lost worker): say so on the trial.
            restores = list(ot_trial.user_attrs.get("restored_at_epochs", []))
            ot_trial.set_user_attr("restored_at_epochs", [*restores, step - 1])

    @_stop_if_storage_gone
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if error:
            # Tune calls the callbacks (which know the error text) right after this.
            self._failed_awaiting_reason.add(trial_id)
            return
        ot_trial = self._ot_trials[trial_id]
        if result and "trial_error" in result:
            self.record_failure(trial_id, str(result["trial_error"]), str(result.get("trial_traceback", "")))
            return
        if not result or TRAINING_ITERATION not in result:
            self._finish(trial_id, TrialState.FAIL, None, "ended without reporting any epoch")
            return
        # The stopping result never reached on_trial_result: record it as an intermediate value.
        self.on_trial_result(trial_id, result)
        epochs = result_epoch(result)
        value = result.get(self.metric)
        ot_trial.set_user_attr("epochs_trained", epochs)
        ot_trial.set_user_attr("wall_time_s", float(result.get("time_total_s", 0.0)))
        ot_trial.set_user_attr("metrics", {
            k: v for k, v in result.items()
            if k not in _NOT_METRICS and not k.startswith("config/")
            and isinstance(v, (int, float)) and not isinstance(v, bool)
        })
        if value is None or not math.isfinite(value):
            self._finish(trial_id, TrialState.FAIL, None, f"metric {self.metric} is {value!r} at epoch {epochs}")
        elif epochs >= self._max_epochs:
            self._finish(trial_id, TrialState.COMPLETE, float(value), f"completed {epochs} epochs")
        else:
            self._finish(trial_id, TrialState.PRUNED, None, f"stopped by ASHA after epoch {epochs} of {self._max_epochs}")

    @_stop_if_storage_gone
    def record_failure(self, trial_id: str, error: str, traceback_tail: str = "") -> None:
        """Called by `TrialRecorder` with the error Tune recorded for a crashed trial."""
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("error", error)
        if traceback_tail:
            ot_trial.set_user_attr("error_traceback", traceback_tail)
        self._failed_awaiting_reason.discard(trial_id)
        self._finish(trial_id, TrialState.FAIL, None, f"failed: {error}")

    def close_unfinished(self) -> int:
        """After the run, nothing this searcher started stays RUNNING in the DB: a failure whose
        text never arrived is FAIL, and a trial cut off by an interrupted run is FAIL too."""
        for trial_id in list(self._failed_awaiting_reason):
            self.record_failure(trial_id, "the trial failed; Ray gave no error text")
        cut_off = [t for t in self._ot_trials if t not in self._completed_trials]
        for trial_id in cut_off:
            trial = self._ot_study._storage.get_trial(self._ot_trials[trial_id]._trial_id)
            if trial.state == TrialState.RUNNING:
                recovery.fail_and_requeue(self._ot_study, trial, "interrupted: the search stopped before this trial finished")
            self._completed_trials.add(trial_id)
        if self.storage_gone is not None:
            raise self.storage_gone  # instead of whatever Ray made of it: the user's one line
        return len(cut_off)

    def _finish(self, trial_id: str, state: TrialState, value: float | None, reason: str) -> None:
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("state_reason", reason)
        try:
            self._ot_study.tell(ot_trial, value, state=state)
        except StorageUnavailable:  # the database is gone past its retry bound: the search stops
            raise
        except Exception as exc:  # never let bookkeeping take the search down
            logger.warning("could not record trial %s as %s: %s", trial_id, state.name, exc)
        self._completed_trials.add(trial_id)


class TrialRecorder(Callback):
    """What the searcher cannot see by itself: the error Tune recorded for a crashed trial, each
    trial's latest checkpoint, and a periodic heartbeat while trials run."""

    def __init__(self, searcher: RecordingOptunaSearch, heartbeat_s: float = recovery.HEARTBEAT_S) -> None:
        self._searcher = searcher
        self._heartbeat_s = heartbeat_s
        self._last_beat = time.monotonic()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error, tail = describe_trial_error(trial)
        self._searcher.record_failure(trial.trial_id, error, tail)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        epoch = (trial.last_result or {}).get("epoch")
        if epoch is not None and getattr(checkpoint, "path", None):
            self._searcher.record_checkpoint(trial.trial_id, checkpoint.path, int(epoch))

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._searcher.storage_gone is not None:
            raise self._searcher.storage_gone  # Ray lets an error raised here end the run
        if time.monotonic() - self._last_beat >= self._heartbeat_s:
            self._last_beat = time.monotonic()
            try:
                self._searcher.heartbeat()
            except StorageUnavailable:
                raise
            except Exception as exc:  # a busy DB must not stop the search; the next beat retries
                logger.warning("heartbeat not recorded: %s", exc)


def describe_trial_error(trial: Any) -> tuple[str, str]:
    """(one line `ExceptionType: message`, the last lines of the traceback) for a failed trial."""
    text = ""
    try:
        exc = trial.get_pickled_error()
    except Exception:
        exc = None
    cause = getattr(exc, "cause", None) or exc
    try:
        error_file = trial.error_file
        if error_file:
            with open(error_file, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
    except OSError:
        pass
    if cause is not None:
        summary = f"{type(cause).__name__}: {cause}".strip()
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        summary = lines[-1] if lines else "unknown error"
    summary = summary.splitlines()[0][:1000] if summary else "unknown error"
    tail = "\n".join(text.splitlines()[-25:])[-4000:]
    return summary, tail
