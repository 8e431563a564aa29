"""Ray Tune's OptunaSearch, made to record in Optuna what actually happened to each trial.

Out of the box, a trial that ASHA stops lands COMPLETE with its half-trained value and without its
last epoch among the intermediate values (Tune does not pass the stopping result to
`on_trial_result`). Here:

- every epoch is an intermediate value (step = epoch), the last one included;
- a trial that ended before `max_epochs` without error is PRUNED (ASHA stopped it);
- a trial that reached `max_epochs` is COMPLETE with its final value;
- a crashed trial is FAIL, with the error in the user attribute `error` (the failure text comes
  from a Tune callback, which Tune calls right after the searcher);
- user attributes: the resolved config, a strategy summary, parameter count, epochs trained,
  wall time, final metrics, and a one-line `state_reason`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch

logger = logging.getLogger(__name__)

# Result keys that are Ray's bookkeeping or recorded elsewhere; the rest are the trial's metrics.
_NOT_METRICS = {
    "epoch", "param_count", "timestamp", "checkpoint_dir_name", "should_checkpoint", "done",
    TRAINING_ITERATION, "trial_id", "date", "time_this_iter_s", "time_total_s", "pid", "hostname",
    "node_ip", "time_since_restore", "iterations_since_restore", "config", "experiment_tag",
}


class RecordingOptunaSearch(OptunaSearch):
    def __init__(
        self,
        *args: Any,
        max_epochs: int,
        describe: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        """`describe(config)` returns user attributes recorded when a trial starts."""
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._describe = describe
        self._last_step: dict[str, int] = {}
        self._failed_awaiting_reason: set[str] = set()

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def trial_number(self, trial_id: str) -> int | None:
        """The Optuna trial number of a Ray trial (what the dashboard shows)."""
        ot_trial = self._ot_trials.get(trial_id)
        return ot_trial.number if ot_trial is not None else None

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if config is not None:
            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr("ray_trial_id", trial_id)
            ot_trial.set_user_attr("config", config)
            for key, value in (self._describe(config) if self._describe else {}).items():
                ot_trial.set_user_attr(key, value)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        step = int(result[TRAINING_ITERATION])
        if self._last_step.get(trial_id) == step:
            return  # already recorded
        first = trial_id not in self._last_step
        self._last_step[trial_id] = step
        ot_trial = self._ot_trials[trial_id]
        value = result.get(self.metric)
        if value is not None and math.isfinite(value):
            ot_trial.report(float(value), step)
        if first and "param_count" in result:
            ot_trial.set_user_attr("param_count", int(result["param_count"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if error:
            # Tune calls the callbacks (which know the error text) right after this.
            self._failed_awaiting_reason.add(trial_id)
            return
        ot_trial = self._ot_trials[trial_id]
        if not result or TRAINING_ITERATION not in result:
            self._finish(trial_id, TrialState.FAIL, None, "ended without reporting any epoch")
            return
        # The stopping result never reached on_trial_result: record it as an intermediate value.
        self.on_trial_result(trial_id, result)
        epochs = int(result[TRAINING_ITERATION])
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

    def record_failure(self, trial_id: str, error: str, traceback_tail: str = "") -> None:
        """Called by `FailureRecorder` with the error Tune recorded for a crashed trial."""
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
            self._finish(trial_id, TrialState.FAIL, None, "interrupted: the search stopped before this trial finished")
        return len(cut_off)

    def _finish(self, trial_id: str, state: TrialState, value: float | None, reason: str) -> None:
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("state_reason", reason)
        try:
            self._ot_study.tell(ot_trial, value, state=state)
        except Exception as exc:  # never let bookkeeping take the search down
            logger.warning("could not record trial %s as %s: %s", trial_id, state.name, exc)
        self._completed_trials.add(trial_id)


class FailureRecorder(Callback):
    """Hands the error Tune recorded for a crashed trial to the searcher."""

    def __init__(self, searcher: RecordingOptunaSearch) -> None:
        self._searcher = searcher

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error, tail = describe_trial_error(trial)
        self._searcher.record_failure(trial.trial_id, error, tail)


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
